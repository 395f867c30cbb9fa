"""verify: size, sha256 and a full decode of a stored backup, its archive listing, and
optionally a test restore into a scratch database checked table by table.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

from psycopg import sql

from backup import postgres
from backup.archive import CHUNK_BYTES, archive_error, open_archive, pump, run_pg_restore
from backup.catalog import Entry
from backup.config import Config, PostgresConfig
from backup.errors import BackupError, ConfigError, IntegrityError
from backup.processes import ChildGroup
from backup.restore import maintenance_db, suffixed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyResult:
    name: str
    destination: str
    size_bytes: int
    tables: int
    restore_test: bool
    row_counts_checked: int


def toc_tables(listing: str) -> list[str]:
    """``schema.table`` of every TABLE DATA entry in ``pg_restore --list`` output."""
    tables = []
    for line in listing.splitlines():
        if line.startswith(";") or " TABLE DATA " not in line:
            continue
        # "<id>; <oid> <oid> TABLE DATA <schema> <name> <owner>"
        rest = line.split(" TABLE DATA ", 1)[1].split(" ")
        if len(rest) >= 2:
            tables.append(f"{rest[0]}.{' '.join(rest[1:-1]) if len(rest) > 2 else rest[1]}")
    return tables


def verify(config: Config, storages: dict, entry: Entry, tools: postgres.Tools) -> VerifyResult:
    """Download, check size and sha256, decode to the end, and list the archive."""
    m = entry.manifest
    storage = storages[entry.destination]
    started = time.monotonic()
    verifying, archive = open_archive(config, storage, entry)
    listing = ""
    with ChildGroup() as children:
        if m.kind == "database":
            lister = children.start(
                [tools.path("pg_restore"), "--list"],
                {},
                "pg_restore --list",
                stdin=subprocess.PIPE,
            )
            out: list[bytes] = []
            reader = _collect(lister.stdout, out)
            pump(archive, lister.stdin, verifying)
            children.finish(archive_error)
            reader.join()
            listing = b"".join(out).decode("utf-8", "replace")
        else:
            while archive.read(CHUNK_BYTES):
                pass
            verifying.drain()
    tables = toc_tables(listing)
    log.info(
        "verified %s on %s: %d bytes, sha256 ok, %d tables in the archive, %.1f s",
        m.name,
        entry.destination,
        verifying.size,
        len(tables),
        time.monotonic() - started,
        extra={"stage": "verify", "destination": entry.destination},
    )
    return VerifyResult(m.name, entry.destination, verifying.size, len(tables), False, 0)


def _collect(stream: IO[bytes], out: list[bytes]):

    def run() -> None:
        for chunk in iter(lambda: stream.read(65536), b""):
            out.append(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def scratch_postgres(config: Config) -> PostgresConfig:
    """Where the test restore runs: VERIFY_DATABASE_URL's server, else the source server."""
    if not config.verify_database_url:
        return config.postgres
    from backup.config import load

    # Reuse the DATABASE_URL parser so the URL's password stays out of argv too.
    parsed = load({"DATABASE_URL": config.verify_database_url.reveal()}).postgres
    return parsed


def restore_test(config: Config, storages: dict, entry: Entry) -> int:
    """Restore ``entry`` into a scratch database, check every table of the archive exists and,
    when the manifest has exact counts, that row counts match; drop the scratch database
    whatever happens. Returns the number of tables checked."""
    m = entry.manifest
    if m.kind != "database":
        raise ConfigError("--restore-test applies to database backups, not globals")
    pg = scratch_postgres(config)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scratch = suffixed(f"pgbackup_verify_{m.database}", f"_{stamp}")
    admin_db = maintenance_db(pg, scratch)
    started = time.monotonic()
    with postgres.connect(pg, admin_db) as conn:
        server = postgres.server_info(conn)
        postgres.create_database(conn, scratch)
    tools = postgres.choose_restore_tools(server, m.pg_dump_version, config.pg_bin_dirs)
    log.info(
        "test restore of %s into scratch database %s on %s",
        m.name,
        scratch,
        pg.display_host,
        extra={"stage": "verify"},
    )
    try:
        verifying, archive = open_archive(config, storages[entry.destination], entry)
        lister_tables = _restore_and_list(tools, pg, scratch, archive, verifying)
        checked = _compare(pg, scratch, m.row_counts, lister_tables)
    finally:
        try:
            with postgres.connect(pg, admin_db) as conn:
                postgres.drop_database(conn, scratch)
        except BackupError as err:
            log.error("could not drop the scratch database %s: %s", scratch, err)
    log.info(
        "test restore of %s passed: %d tables present%s, %.1f s",
        m.name,
        len(lister_tables),
        f", {checked} exact row counts equal" if checked else "",
        time.monotonic() - started,
        extra={"stage": "verify"},
    )
    return checked


def _restore_and_list(tools, pg, scratch, archive, verifying) -> list[str]:
    run_pg_restore(tools, pg, scratch, archive, verifying, ["--no-owner", "--no-privileges"], 1)
    with postgres.connect(pg, scratch) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return [r[0] for r in rows]


def _compare(pg: PostgresConfig, scratch: str, recorded: dict, restored_tables: list[str]) -> int:
    tables = recorded.get("tables", {}) if recorded else {}
    present = set(restored_tables)
    missing = [t for t in tables if t not in present]
    if missing:
        raise IntegrityError(
            f"test restore: {len(missing)} table(s) of the manifest are missing: "
            + ", ".join(missing[:10])
        )
    if recorded.get("mode") != "exact":
        return 0
    mismatched = []
    with postgres.connect(pg, scratch) as conn:
        for key, expected in tables.items():
            schema, _, table = key.partition(".")
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            actual = int(row[0]) if row else 0
            if actual != expected:
                mismatched.append(f"{key}: {actual} rows, manifest says {expected}")
    if mismatched:
        raise IntegrityError("test restore: row counts differ: " + "; ".join(mismatched[:10]))
    return len(tables)
