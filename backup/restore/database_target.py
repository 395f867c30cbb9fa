"""The database a whole restore writes into, read before anything changes: its name
(--target-db or the backed-up one), its server, whether it exists, its owner and sessions; and
what the operator confirms (or --dry-run prints) before it is replaced."""

from __future__ import annotations

from dataclasses import dataclass

from backup.config import Config
from backup.errors import ConfigError
from backup.manifest.catalog import Entry
from backup.postgres import pooler
from backup.postgres import server as pg_server
from backup.restore.steps import RestoreOptions, describe_sessions, kept_name


@dataclass(frozen=True)
class Target:
    """The database restored into, as its server has it before anything changes."""

    name: str
    admin_db: str
    server: pg_server.ServerInfo
    exists: bool
    owner: str | None
    sessions: list[pg_server.Session]


def target_name(options: RestoreOptions, backed_up: str | None) -> str:
    """--target-db, else the backed-up database's name; refused (exit 2) when blank."""
    target = options.target_db if options.target_db is not None else backed_up
    if not target or not target.strip():
        raise ConfigError(
            f"--target-db {target!r}: a database name cannot be empty or blank",
            hint="name the database to restore into, or leave --target-db out to restore "
            "into the backed-up database's name",
        )
    pg_server.check_identifier(target, "--target-db")
    return target


def inspect_target(config: Config, target: str) -> Target:
    """One connection to the maintenance database: the server, and the target's owner and
    sessions when it exists."""
    pg = config.postgres
    admin_db = pg_server.maintenance_db(pg, target)
    with pg_server.connect(pg, admin_db) as conn:
        # pg_restore's session settings would land on server sessions others share
        pooler.require_sessions(pg, admin_db, conn)
        server = pg_server.server_info(conn)
        exists = pg_server.database_exists(conn, target)
        owner = pg_server.database_owner(conn, target) if exists else None
        sessions = pg_server.database_sessions(conn, target) if exists else []
    return Target(target, admin_db, server, exists, owner, sessions)


def confirmation(
    config: Config, target: Target, entry: Entry, options: RestoreOptions, stamp: str
) -> list[str]:
    """What the operator confirms (or --dry-run prints): where, what, and what is lost."""
    first, exists = entry.manifest, target.exists
    mode = (
        "in place (--clean)"
        if options.in_place
        else ("into a new database, then swap names" if exists else "create the database")
    )
    lines = [
        "⚠️  WARNING: DATABASE RESTORE",
        f"Server:   {config.postgres.display_host} (PostgreSQL {target.server.version})",
        f"Database: {target.name}"
        + (" (exists: its content will be REPLACED)" if exists else " (new)"),
        f"Backup:   {first.name} ({first.size_bytes / 1e6:.2f} MB, "
        f"{first.created_at:%Y-%m-%d %H:%M:%S} UTC) from {entry.destination}",
        f"Mode:     {mode}",
    ]
    if exists and not options.in_place:
        lines.append(
            "The current database is dropped."
            if options.drop_old
            else f"The current database is kept, renamed {kept_name(target.name, stamp)}."
        )
    if options.in_place:
        lines.append("This will OVERWRITE the current database! Its data will be LOST.")
    if not options.database_properties:
        lines.append(
            "The backup's owner, settings, comment and grants of the database are NOT restored "
            "(--no-database-properties)."
        )
    if exists:
        lines.append(describe_sessions(target.name, target.sessions, options.in_place))
    return lines
