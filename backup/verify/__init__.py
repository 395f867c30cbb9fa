"""The verify engine: size, sha256 and a full decode of a stored backup, its archive listing, and
optionally a test restore into a scratch database checked table by table.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from backup.config import Config, PostgresConfig
from backup.dirformat import damage
from backup.dirformat.damage import DamagedFile
from backup.dirformat.fetch import fetch_folder
from backup.errors import BackupError, ConfigError, IntegrityError
from backup.manifest.catalog import Entry
from backup.postgres import pg_restore
from backup.postgres import tools as pg_tools
from backup.postgres.pg_restore import (
    HeadRecorder,
    archive_error,
    read_database_properties,
    run_pg_restore,
)
from backup.postgres.pg_restore_dir import folder_properties, list_folder, restore_folder
from backup.postgres.processes import ChildGroup, pump
from backup.postgres.properties import DatabaseProperties
from backup.storage import Readable, Storage
from backup.stream.readback import CHUNK_BYTES, VerifyingReader, open_archive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyResult:
    name: str
    destination: str
    size_bytes: int
    tables: int
    restore_test: bool
    row_counts_checked: int


@dataclass(frozen=True)
class RestoreTest:
    """What a test restore measured."""

    seconds: float
    """Wall time of the restore proper: scratch database created, the backup downloaded,
    decrypted, decompressed and restored by pg_restore, its tables listed (the comparison with
    the manifest and the drop are not included): what a real restore of it would take."""
    tables_checked: int
    """Tables found in the scratch database, all of the manifest's among them."""
    row_counts_checked: int
    """Tables whose exact row counts were compared (0 unless the manifest has exact counts)."""
    properties_applied: tuple[str, ...] = ()
    """The database's own properties given to the scratch database (owner, setting, ...)."""
    properties_missing: tuple[str, ...] = ()
    """Properties not applied because a role they name does not exist there (warnings)."""


def created_table_oids(listing: str) -> list[int]:
    """The tables (ordinary, unlogged, partitioned) an archive creates, by OID: the kinds
    the test restore counts in the scratch database, so both say the same number."""
    return sorted(pg_restore.toc_tables(listing).tables)


def toc_matviews(listing: str) -> int:
    """How many materialized views the archive creates: not tables, said apart."""
    count = 0
    for line in listing.splitlines():
        # "<id>; <tableoid> <oid> <desc> <schema> <name> <owner>"
        desc = "".join(line.partition("; ")[2].split(" ", 2)[2:])
        if desc.startswith("MATERIALIZED VIEW ") and not desc.startswith("MATERIALIZED VIEW DATA "):
            count += 1
    return count


def in_the_archive(listing: str) -> str:
    """``8 tables`` or ``8 tables and 1 materialized view``: what verify says it found."""
    tables = len(created_table_oids(listing))
    said = f"{tables} table{'' if tables == 1 else 's'}"
    views = toc_matviews(listing)
    if views:
        said += f" and {views} materialized view{'' if views == 1 else 's'}"
    return said


def verify(
    config: Config, storages: dict[str, Storage], entry: Entry, tools: pg_tools.Tools
) -> VerifyResult:
    """Download, check size and sha256, decode to the end, and list the archive."""
    m = entry.manifest
    storage = storages[entry.destination]
    started = time.monotonic()
    if m.format == "directory":
        return _verify_directory(config, storage, entry, tools)
    verifying, archive = open_archive(
        config.codec, storage, m, config.log.progress_interval_s, "verify"
    )
    listing = ""
    with ChildGroup() as children:
        if m.kind == "database":
            lister = children.start(
                pg_tools.pg_restore_list_argv(tools),
                {},
                "pg_restore --list",
                stdin=subprocess.PIPE,
            )
            out: list[bytes] = []
            reader = _collect(lister.stdout, out)
            pump(archive, lister.stdin, verifying.drain)
            children.finish(archive_error)
            reader.join()
            listing = b"".join(out).decode("utf-8", "replace")
        else:
            while archive.read(CHUNK_BYTES):
                pass
            verifying.drain()
    tables = created_table_oids(listing)
    log.info(
        "verified %s on %s: %d bytes, sha256 ok, %s in the archive, %.1f s",
        m.name,
        entry.destination,
        verifying.size,
        in_the_archive(listing),
        time.monotonic() - started,
        extra={"stage": "verify", "destination": entry.destination},
    )
    return VerifyResult(m.name, entry.destination, verifying.size, len(tables), False, 0)


def _verify_directory(
    config: Config, storage: Storage, entry: Entry, tools: pg_tools.Tools
) -> VerifyResult:
    """Every file the manifest lists: size, sha256, decoded to its end; the archive listed
    from its toc.dat (the only file kept on disk)."""
    m = entry.manifest
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgbackup-verify-") as folder:
        try:
            read = fetch_folder(
                config.codec,
                storage,
                m,
                folder,
                config.dump.jobs,
                keep="toc.dat".__eq__,
                progress_s=config.log.progress_interval_s,
                purpose="verify",
                tools=tools,
            )
        except DamagedFile as err:
            damage.record(storage, m, err)  # the next backup stores that object anew
            raise
        listing = list_folder(tools, folder)
    tables = created_table_oids(listing)
    log.info(
        "verified %s on %s: %d files, %d bytes, sha256 ok, %s in the archive, %.1f s",
        m.name,
        entry.destination,
        len(m.files),
        read,
        in_the_archive(listing),
        time.monotonic() - started,
        extra={"stage": "verify", "destination": entry.destination},
    )
    return VerifyResult(m.name, entry.destination, read, len(tables), False, 0)


def _collect(stream: IO[bytes], out: list[bytes]) -> threading.Thread:

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


def restore_test(config: Config, storages: dict[str, Storage], entry: Entry) -> RestoreTest:
    """Restore ``entry`` into a scratch database, check every table of the archive exists and,
    when the manifest has exact counts, that row counts match; drop the scratch database
    whatever happens. Returns what was measured and checked."""
    # psycopg: only the test restore connects (a plain verify reads the archive alone)
    from backup.postgres import pooler
    from backup.postgres import server as pg_server

    m = entry.manifest
    if m.kind != "database":
        raise ConfigError("--restore-test applies to database backups, not globals")
    pg = scratch_postgres(config)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scratch = pg_server.suffixed(f"pgbackup_verify_{m.database}", f"_{stamp}")
    admin_db = pg_server.maintenance_db(pg, scratch)
    started = time.monotonic()
    with pg_server.connect(pg, admin_db) as conn:
        # pg_restore's session settings would land on server sessions others share
        pooler.require_sessions(pg, admin_db, conn)
        server = pg_server.server_info(conn)
        pg_server.create_database(conn, scratch)
    tools = pg_tools.choose_restore_tools(server, m.pg_dump_version, config.pg_bin_dirs)
    log.info(
        "test restore of %s into scratch database %s on %s",
        m.name,
        scratch,
        pg.display_host,
        extra={"stage": "verify"},
    )
    try:
        if m.format == "directory":
            lister_tables, props = _restore_folder_and_list(
                config, storages, entry, tools, pg, scratch
            )
        else:
            lister_tables, props = _restore_and_list(
                tools, pg, scratch, lambda purpose: _open(config, storages, entry, purpose)
            )
        applied, missing = _give_properties(pg, admin_db, scratch, props, m.name)
        restore_seconds = time.monotonic() - started
        checked = _compare(pg, scratch, m.row_counts, lister_tables)
    finally:
        try:
            with pg_server.connect(pg, admin_db) as conn:
                pg_server.drop_database(conn, scratch)
        except BackupError as err:
            log.error("could not drop the scratch database %s: %s", scratch, err)
    log.info(
        "test restore of %s passed: %d tables present%s, restored in %.1f s",
        m.name,
        len(lister_tables),
        f", {checked} exact row counts equal" if checked else "",
        restore_seconds,
        extra={"stage": "verify"},
    )
    return RestoreTest(restore_seconds, len(lister_tables), checked, tuple(applied), tuple(missing))


def _open(
    config: Config, storages: dict[str, Storage], entry: Entry, purpose: str
) -> tuple[VerifyingReader, Readable]:
    every_s = config.log.progress_interval_s
    return open_archive(config.codec, storages[entry.destination], entry.manifest, every_s, purpose)


def _restore_and_list(
    tools: pg_tools.Tools,
    pg: PostgresConfig,
    scratch: str,
    reopen: Callable[[str], tuple[VerifyingReader, Readable]],
) -> tuple[list[str], DatabaseProperties]:
    from backup.postgres import server as pg_server

    verifying, archive = reopen("test restore")
    with HeadRecorder(archive) as head:
        run_pg_restore(tools, pg, scratch, head, verifying, ["--no-owner", "--no-privileges"], 1)
        props = read_database_properties(
            tools, head, lambda: reopen("test restore (reading the TOC again)")
        )
    with pg_server.connect(pg, scratch) as conn:
        return pg_server.list_tables(conn), props


def _give_properties(
    pg: PostgresConfig, admin_db: str, scratch: str, props: DatabaseProperties, name: str
) -> tuple[list[str], list[str]]:
    """The database's own properties (owner, settings, comment, grants) given to the scratch
    database, as a restore gives them: proof that they apply. A role missing on this server is
    a warning, not a failure of the test; any other failure is."""
    from backup.postgres import server as pg_server

    for statement in props.skipped:
        log.warning("test restore of %s: database property not understood: %s", name, statement)
    statements = [(s.kind, s.for_database(scratch)) for s in props.statements]
    if not statements:
        return [], []
    with pg_server.connect(pg, admin_db) as conn:
        applied, missing = pg_server.apply_properties_each(conn, statements)
    kinds = sorted(set(applied) - {"grantor"})
    log.info(
        "test restore of %s: the database's own properties applied: %s",
        name,
        ", ".join(kinds) or "none",
        extra={"stage": "verify"},
    )
    for report in missing:
        log.warning(
            "test restore of %s: a database property not applied, its role does not exist on "
            "this server (%s); a restore there would stop: restore the roles first "
            "('restore --globals')",
            name,
            report,
            extra={"stage": "verify"},
        )
    return kinds, missing


def _restore_folder_and_list(
    config: Config,
    storages: dict[str, Storage],
    entry: Entry,
    tools: pg_tools.Tools,
    pg: PostgresConfig,
    scratch: str,
) -> tuple[list[str], DatabaseProperties]:
    from backup.postgres import server as pg_server

    jobs = config.dump.jobs
    with tempfile.TemporaryDirectory(prefix="pgbackup-verify-") as folder:
        fetch_folder(
            config.codec,
            storages[entry.destination],
            entry.manifest,
            folder,
            jobs,
            progress_s=config.log.progress_interval_s,
            purpose="test restore",
            tools=tools,
        )
        restore_folder(tools, pg, scratch, folder, ["--no-owner", "--no-privileges"], jobs)
        props = folder_properties(tools, folder)
    with pg_server.connect(pg, scratch) as conn:
        return pg_server.list_tables(conn), props


def _compare(pg: PostgresConfig, scratch: str, recorded: dict, restored_tables: list[str]) -> int:
    from backup.postgres import server as pg_server

    tables = recorded.get("tables", {}) if recorded else {}
    # Tables the backup holds without their rows (BACKUP_EXCLUDE_TABLE_DATA) must exist too.
    without_data = recorded.get("without_data", []) if recorded else []
    present = set(restored_tables)
    missing = [t for t in (*tables, *without_data) if t not in present]
    if missing:
        raise IntegrityError(
            f"test restore: {len(missing)} table(s) of the manifest are missing: "
            + ", ".join(missing[:10])
        )
    if recorded.get("mode") != "exact":
        return 0
    mismatched = []
    with pg_server.connect(pg, scratch) as conn:
        for key, expected in tables.items():
            schema, _, table = key.partition(".")
            actual = pg_server.count_rows(conn, schema, table)
            if actual != expected:
                mismatched.append(f"{key}: {actual} rows, manifest says {expected}")
    if mismatched:
        raise IntegrityError("test restore: row counts differ: " + "; ".join(mismatched[:10]))
    return len(tables)
