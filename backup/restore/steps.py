"""The steps a restore of either format shares: the options, the confirmation, the sessions a
swap ends, the database's own properties given to the restored database, the creation
settings compared, and the swap of names; and the two ways they run in order,
``restore_fresh`` (never destroy first) and ``restore_in_place``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from backup.config import PostgresConfig
from backup.errors import BackupError, ConfigError, DatabaseError
from backup.postgres import server as pg_server
from backup.postgres.properties import DatabaseProperties

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreOptions:
    target_db: str | None = None
    force: bool = False
    in_place: bool = False
    drop_old: bool = False
    jobs: int | None = None
    """``--jobs``; None: 1 for a custom-format backup, BACKUP_JOBS for a directory one."""
    dry_run: bool = False
    database_properties: bool = True


def confirm(prompt_lines: list[str], force: bool, stdin: IO[str] | None = None) -> None:
    """Ask for YES on a terminal; without one, refuse unless ``--force`` (exit 2)."""
    if force:
        return
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise ConfigError(
            "restore needs confirmation and there is no terminal",
            hint="run it on a terminal, or pass --force to skip the confirmation",
        )
    rule = "=" * 60
    print(rule, *prompt_lines, rule, sep="\n", file=sys.stderr)
    print("Type 'YES' to confirm restore: ", end="", file=sys.stderr, flush=True)
    answer = stdin.readline().strip()
    if answer != "YES":
        raise ConfigError("restore cancelled: the answer was not YES", hint="nothing was changed")


def describe_sessions(
    database: str, sessions: list[pg_server.Session], in_place: bool = False
) -> str:
    """One line naming the sessions connected to ``database`` and what the restore does to
    them: the swap terminates them; ``--in-place`` leaves them (they may wait on its locks)."""
    if not sessions:
        return f"Sessions: none connected to {database}"
    users = Counter(s.user or "?" for s in sessions)
    apps = Counter(s.application or "(none)" for s in sessions)
    count = len(sessions)
    what = (
        f"{count} connected to {database} (--in-place does not end them; they may block the "
        "restore or see it half done)"
        if in_place
        else f"{count} connected to {database} will be TERMINATED at the swap"
    )
    return f"Sessions: {what}; users: {_tally(users)}; applications: {_tally(apps)}"


def _tally(counts: Counter[str]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))


def give_properties(
    pg: PostgresConfig,
    admin_db: str,
    database: str,
    props: DatabaseProperties,
    options: RestoreOptions,
    *,
    reset: bool = False,
    commit: bool = True,
    final_name: str | None = None,
) -> None:
    """Give ``database`` the archived database's properties, in one transaction; with
    ``--no-database-properties``, list them in a warning instead (once, at the real run, for
    the database's ``final_name``: statements an operator can run by hand later)."""
    statements = props.for_database(database)
    if not options.database_properties:
        if commit:
            for statement in props.for_database(final_name or database):
                log.warning("--no-database-properties: not applied: %s", statement.as_string(None))
        return
    if not statements and not reset:
        return
    try:
        with pg_server.connect(pg, admin_db) as conn:
            pg_server.apply_database_properties(
                conn, database, statements, reset=reset, commit=commit
            )
    except DatabaseError as err:
        raise DatabaseError(
            err.message,
            hint=f"{err.hint}; or pass --no-database-properties to restore without them "
            "(they are listed in the log)",
        ) from err
    if commit:
        log.info(
            "database properties of the backup given to %s: %s",
            database,
            ", ".join(props.kinds()) or "none recorded",
        )


def compare_creation(
    pg: PostgresConfig, admin_db: str, database: str, props: DatabaseProperties
) -> None:
    """Encoding, locale and tablespace are fixed when a database is created; the restore
    creates it with the server's defaults. Say so when they differ from the backup's."""
    if not props.creation:
        return
    try:
        with pg_server.connect(pg, admin_db) as conn:
            actual = pg_server.database_creation(conn, database)
    except DatabaseError as err:
        log.warning("could not compare %s with the backup's encoding and locale: %s", database, err)
        return
    differ = [
        f"{key} {props.creation[key]!r} (restored: {actual[key]!r})"
        for key in props.creation
        if key in actual and actual[key] != props.creation[key]
    ]
    if differ:
        log.warning(
            "the backed-up database was created with other settings than the restored one: %s; "
            "sorting and character handling may differ. To keep them, create the database by "
            "hand with those options (CREATE DATABASE ... TEMPLATE template0 ...) and restore "
            "with --in-place",
            "; ".join(differ),
        )


def kept_name(target: str, stamp: str) -> str:
    """The name the swap gives the database it replaces (``<target>_pre_restore_<stamp>``),
    shown in the confirmation and the dry run before it is used."""
    return pg_server.suffixed(target, f"_pre_restore_{stamp}")


def swap(
    pg: PostgresConfig,
    admin_db: str,
    target: str,
    fresh: str,
    options: RestoreOptions,
    stamp: str,
) -> None:
    """``fresh`` (restored, checked) takes ``target``'s name; the old database is kept as
    ``<target>_pre_restore_<stamp>`` unless ``--drop-old``; both renames commit together or
    not at all."""
    old = kept_name(target, stamp)
    with pg_server.connect(pg, admin_db) as conn:
        sessions = pg_server.database_sessions(conn, target)
        if sessions:
            log.warning(
                "swap: %s",
                describe_sessions(target, sessions).removeprefix("Sessions: "),
            )
        # Both renames in one transaction (PostgreSQL allows ALTER DATABASE RENAME in one):
        # a failure, a signal or a lost connection between them leaves the names as they were,
        # never no database under the target's name.
        with conn.transaction():
            pg_server.rename_database(conn, target, old)
            pg_server.rename_database(conn, fresh, target)
        if options.drop_old:
            pg_server.drop_database(conn, old)
            log.info("dropped the previous database (--drop-old)")
        else:
            log.info("previous database kept as %s", old)


def restore_in_place(
    pg: PostgresConfig,
    admin_db: str,
    target: str,
    props: DatabaseProperties,
    options: RestoreOptions,
    name: str,
    restore: Callable[[], None],
) -> None:
    """``--in-place``: the properties rehearsed first (a role they name that is missing stops
    the restore before anything is touched), then ``restore()`` into ``target`` itself, the
    properties given and the creation settings compared. A failure says plainly what state
    ``target`` is in: there is no fresh copy to fall back on."""
    give_properties(pg, admin_db, target, props, options, reset=True, commit=False)
    try:
        restore()
        give_properties(pg, admin_db, target, props, options, reset=True)
        compare_creation(pg, admin_db, target, props)
    except BackupError:
        log.error(
            "in-place restore of %s failed part way: %s may be partly restored; the backup "
            "itself checked out, so fix the cause and run the restore again",
            name,
            target,
        )
        raise


def restore_fresh(
    pg: PostgresConfig,
    admin_db: str,
    target: str,
    exists: bool,
    owner: str | None,
    options: RestoreOptions,
    stamp: str,
    restore: Callable[[str], DatabaseProperties],
) -> None:
    """Never destroy first: ``restore(fresh)`` into a new database (``target`` itself when it
    does not exist yet) returns the properties to give it; the creation settings are compared;
    any failure drops that database and leaves ``target`` as it was; then the swap."""
    fresh = pg_server.suffixed(target, f"_restoring_{stamp}") if exists else target
    with pg_server.connect(pg, admin_db) as conn:
        pg_server.create_database(conn, fresh, owner)
    try:
        props = restore(fresh)
        give_properties(pg, admin_db, fresh, props, options, final_name=target)
        compare_creation(pg, admin_db, fresh, props)
    except BaseException:
        log.error("restore failed: dropping %s; %s is unchanged", fresh, target)
        with contextlib.suppress(BackupError), pg_server.connect(pg, admin_db) as conn:
            pg_server.drop_database(conn, fresh)
        raise
    if exists:
        swap(pg, admin_db, target, fresh, options, stamp)
