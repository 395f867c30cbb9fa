"""The restore engine: destination -> sha256 -> decrypt -> decompress -> pg_restore -> database.

The package holds every restore: a whole database (this module), chosen tables
(``tables.py``), and the steps they share (``steps.py``).

Restore never destroys data before the new copy is known good: it restores into a fresh
database and swaps names only when pg_restore succeeded and the checksum matched (the old
database is kept as ``<db>_pre_restore_<timestamp>`` unless ``--drop-old``). ``--in-place``
verifies the whole object first, then restores with ``--clean --if-exists``. A failed restore
drops what it created and leaves the target as it was.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable

from backup.config import Config
from backup.dirformat.fetch import fetch_folder
from backup.errors import BackupError, ConfigError, DatabaseError, StorageError
from backup.manifest.catalog import Entry
from backup.postgres import server as pg_server
from backup.postgres import tools as pg_tools
from backup.postgres.pg_restore import HeadRecorder, read_database_properties, run_pg_restore
from backup.postgres.pg_restore_dir import folder_properties, restore_folder
from backup.postgres.processes import ChildGroup, pump
from backup.postgres.properties import DatabaseProperties
from backup.restore import database_target
from backup.restore.steps import (
    RestoreOptions,
    confirm,
    restore_fresh,
    restore_in_place,
)
from backup.storage import Readable, Storage
from backup.stream.readback import CHUNK_BYTES, VerifyingReader, open_archive

log = logging.getLogger(__name__)


def restore_database(
    config: Config,
    storages: dict[str, Storage],
    entries: list[Entry],
    options: RestoreOptions,
    confirm_fn: Callable[[list[str], bool], None] = confirm,
) -> str:
    """Restore the backup in ``entries`` (one per destination, tried in order)."""
    first = entries[0].manifest
    target = database_target.inspect_target(
        config, database_target.target_name(options, first.database)
    )
    server = target.server
    tools = pg_tools.choose_restore_tools(server, first.pg_dump_version, config.pg_bin_dirs)
    dump_major = pg_tools.major_of(first.server_version)
    if dump_major and dump_major > server.major:
        log.warning(
            "this backup comes from PostgreSQL %s and the target server is %s: restoring into "
            "an older major may fail on newer syntax",
            first.server_version,
            server.version,
        )
    # one stamp for the run: the name the confirmation shows is the name the swap gives
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    lines = database_target.confirmation(config, target, entries[0], options, stamp)
    if options.dry_run:
        for line in lines:
            print(line)
        print("dry run: nothing was changed")
        return target.name
    confirm_fn(lines, options.force)
    if options.in_place and not target.exists:
        raise ConfigError(f"--in-place: database {target.name!r} does not exist")
    try:
        _restore_first_readable(config, storages, entries, tools, target, options, stamp)
    except DatabaseError as err:
        if dump_major and dump_major > server.major:
            raise DatabaseError(
                err.message,
                hint=f"this backup comes from PostgreSQL {first.server_version} and the "
                f"server runs {server.version}: restore into a server of major {dump_major} "
                "or newer, or edit a script made with 'pg_restore -f -' by hand",
            ) from err
        raise
    return target.name


def _restore_first_readable(
    config: Config,
    storages: dict[str, Storage],
    entries: list[Entry],
    tools: pg_tools.Tools,
    target: database_target.Target,
    options: RestoreOptions,
    stamp: str,
) -> None:
    """The backup from its first destination; a destination that cannot be read falls back to
    the next (a database error does not: the next copy would fail the same way)."""
    last_error: BackupError | None = None
    for index, entry in enumerate(entries):
        if index:
            log.warning(
                "falling back to %s for %s after: %s",
                entry.destination,
                entry.manifest.name,
                last_error,
            )
        try:
            _restore_from(
                config,
                storages[entry.destination],
                entry,
                tools,
                target.name,
                target.exists,
                target.owner,
                target.admin_db,
                options,
                stamp,
            )
            return
        except StorageError as err:
            last_error = err
            continue
    assert last_error is not None
    raise last_error


def _restore_from(
    config: Config,
    storage: Storage,
    entry: Entry,
    tools: pg_tools.Tools,
    target: str,
    exists: bool,
    owner: str | None,
    admin_db: str,
    options: RestoreOptions,
    stamp: str,
) -> None:
    pg = config.postgres
    m = entry.manifest
    started = time.monotonic()
    log.info(
        "restoring %s from %s into %s",
        m.name,
        entry.destination,
        target,
        extra={"stage": "restore", "destination": entry.destination},
    )

    if m.format == "directory":
        _restore_directory(
            config, storage, entry, tools, target, exists, owner, admin_db, options, stamp
        )
        return
    every_s = config.log.progress_interval_s

    def reopen() -> tuple[VerifyingReader, Readable]:
        return open_archive(config.codec, storage, m, every_s, "restore (reading the TOC again)")

    if options.in_place:
        # Check the whole object before touching the only copy of the data.
        verifying, archive = open_archive(
            config.codec, storage, m, every_s, "restore --in-place (checking first)"
        )
        with HeadRecorder(archive) as head:
            while head.read(CHUNK_BYTES):
                pass
            verifying.drain()
            props = _database_properties(tools, head, m.name, reopen)

        def in_place() -> None:
            verifying, archive = open_archive(config.codec, storage, m, every_s, "restore")
            run_pg_restore(
                tools, pg, target, archive, verifying, [], (options.jobs or 1), clean=True
            )

        restore_in_place(pg, admin_db, target, props, options, m.name, in_place)
        log.info(
            "restored %s into %s in place in %.1f s", m.name, target, time.monotonic() - started
        )
        return

    def into(fresh: str) -> DatabaseProperties:
        verifying, archive = open_archive(config.codec, storage, m, every_s, "restore")
        with HeadRecorder(archive) as head:
            run_pg_restore(tools, pg, fresh, head, verifying, [], (options.jobs or 1))
            return _database_properties(tools, head, m.name, reopen)

    restore_fresh(pg, admin_db, target, exists, owner, options, stamp, into)
    log.info(
        "restored %s into %s in %.1f s (%d bytes, sha256 ok)",
        m.name,
        target,
        time.monotonic() - started,
        m.size_bytes,  # what VerifyingReader read to the end, size and sha256 checked
        extra={"stage": "restore", "seconds": round(time.monotonic() - started, 3)},
    )


def _restore_directory(
    config: Config,
    storage: Storage,
    entry: Entry,
    tools: pg_tools.Tools,
    target: str,
    exists: bool,
    owner: str | None,
    admin_db: str,
    options: RestoreOptions,
    stamp: str,
) -> None:
    """A directory-format backup: every file downloaded and checked into a spool folder
    first (nothing on the server is touched before the whole backup checked out), then
    ``pg_restore -j`` from it, with the same fresh database and swap (or ``--in-place``)."""
    pg = config.postgres
    m = entry.manifest
    jobs = options.jobs or config.dump.jobs
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgbackup-restore-") as spool:
        folder = os.path.join(spool, "dump")
        os.mkdir(folder, 0o700)
        read = fetch_folder(
            config.codec,
            storage,
            m,
            folder,
            jobs,
            progress_s=config.log.progress_interval_s,
            purpose="restore",
            tools=tools,
        )
        props = folder_properties(tools, folder)
        for statement in props.skipped:
            log.warning(
                "%s: database property not restored (not understood): %s", m.name, statement
            )
        if options.in_place:
            restore_in_place(
                pg,
                admin_db,
                target,
                props,
                options,
                m.name,
                lambda: restore_folder(tools, pg, target, folder, [], jobs, clean=True),
            )
            log.info(
                "restored %s into %s in place in %.1f s", m.name, target, time.monotonic() - started
            )
            return

        def into(fresh: str) -> DatabaseProperties:
            restore_folder(tools, pg, fresh, folder, [], jobs)
            return props

        restore_fresh(pg, admin_db, target, exists, owner, options, stamp, into)
    log.info(
        "restored %s into %s in %.1f s (%d files, %d bytes, sha256 ok, %d jobs)",
        m.name,
        target,
        time.monotonic() - started,
        len(m.files),
        read,
        jobs,
        extra={"stage": "restore", "seconds": round(time.monotonic() - started, 3)},
    )


def _database_properties(
    tools: pg_tools.Tools,
    head: HeadRecorder,
    name: str,
    reopen: Callable[[], tuple[VerifyingReader, Readable]],
) -> DatabaseProperties:
    """The database's own properties in the archive (owner, settings, comment, grants);
    statements of a shape not recognised are reported and not run."""
    props = read_database_properties(tools, head, reopen)
    for statement in props.skipped:
        log.warning("%s: database property not restored (not understood): %s", name, statement)
    return props


def restore_globals(
    config: Config, storages: dict[str, Storage], entries: list[Entry], force: bool, dry_run: bool
) -> None:
    """Replay roles and tablespaces (``pg_dumpall --globals-only``) with psql. Roles that
    already exist produce errors that are reported and skipped, so the rest still applies."""
    pg = config.postgres
    entry = entries[0]
    m = entry.manifest
    admin_db = pg_server.maintenance_db(pg, "")
    with pg_server.connect(pg, admin_db) as conn:
        server = pg_server.server_info(conn)
    tools = pg_tools.choose_tools(server, config.pg_bin_dirs)
    lines = [
        "⚠️  WARNING: ROLES AND TABLESPACES RESTORE",
        f"Server: {pg.display_host} (PostgreSQL {server.version})",
        f"Backup: {m.name} ({m.size_bytes / 1e6:.2f} MB) from {entry.destination}",
        "Roles in the backup are created or altered (passwords included when recorded).",
    ]
    if dry_run:
        print("\n".join(lines))
        print("dry run: nothing was changed")
        return
    confirm(lines, force)
    verifying, archive = open_archive(
        config.codec, storages[entry.destination], m, config.log.progress_interval_s, "restore"
    )
    with ChildGroup() as children:
        psql = children.start(
            pg_tools.psql_script_argv(tools, admin_db),
            pg.libpq_env(admin_db),
            "psql",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        pump(archive, psql.stdin, verifying.drain)
        children.finish()
    skipped = [line for line in psql.stderr_tail if "ERROR" in line]
    for line in skipped:
        log.warning("globals: %s", line)
    log.info("restored globals %s (%d statements reported errors)", m.name, len(skipped))
