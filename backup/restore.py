"""Restore and verify: destination -> sha256 check -> decrypt -> decompress -> pg_restore.

Restore never destroys data before the new copy is known good: it restores into a fresh
database and swaps names only when pg_restore succeeded and the checksum matched (the old
database is kept as ``<db>_pre_restore_<timestamp>`` unless ``--drop-old``). ``--in-place``
verifies the whole object first, then restores with ``--clean --if-exists`` in one transaction.
A failed restore drops what it created and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO

from backup import postgres
from backup.catalog import Entry
from backup.codec import open_decoder
from backup.config import Config, PostgresConfig
from backup.errors import (
    BackupError,
    ConfigError,
    DatabaseError,
    IntegrityError,
    StorageError,
)
from backup.processes import ChildGroup

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
MAX_IDENTIFIER_BYTES = 63


class VerifyingReader:
    """Counts and hashes what it reads; at the end, a mismatch with the manifest raises
    ``IntegrityError`` (exit 5) before the caller may trust what it read."""

    def __init__(self, source: BinaryIO, entry: Entry) -> None:
        self.source = source
        self.entry = entry
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.done = False

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self.source.read(size if size and size > 0 else CHUNK_BYTES)
        except BackupError:
            raise
        except Exception as err:
            raise StorageError(f"{self.entry.destination}: download failed: {err}") from err
        if chunk:
            self.sha256.update(chunk)
            self.size += len(chunk)
        elif not self.done:
            self.done = True
            self.check()
        return chunk

    def check(self) -> None:
        m = self.entry.manifest
        if self.size != m.size_bytes:
            raise IntegrityError(
                f"{m.name} on {self.entry.destination} is {self.size} bytes, the manifest says "
                f"{m.size_bytes}: the object is truncated or was replaced"
            )
        if self.sha256.hexdigest() != m.sha256:
            raise IntegrityError(
                f"{m.name} on {self.entry.destination}: sha256 mismatch (stored object altered)"
            )

    def drain(self) -> None:
        while self.read(CHUNK_BYTES):
            pass


def open_archive(config: Config, storage, entry: Entry) -> tuple[VerifyingReader, object]:
    """The verified, decrypted, decompressed archive stream of ``entry``."""
    m = entry.manifest
    raw = storage.open(m.object_key)
    verifying = VerifyingReader(raw, entry)
    if m.encrypted and not (config.codec.age_identity or config.codec.age_passphrase):
        raw.close()
        raise IntegrityError(
            f"{m.name} is encrypted and no key is configured",
            hint="set BACKUP_AGE_IDENTITY or BACKUP_AGE_IDENTITY_FILE (or BACKUP_AGE_PASSPHRASE)",
        )
    return verifying, open_decoder(verifying, m.compression, m.encrypted, config.codec)


def pump(source, sink: IO[bytes], verifying: VerifyingReader) -> None:
    """Copy the archive into a child's stdin; if the child stops reading early, keep reading
    the object to its end so the checksum is still checked."""
    broken = False
    while chunk := source.read(CHUNK_BYTES):
        if broken:
            continue
        try:
            sink.write(chunk)
        except BrokenPipeError:
            broken = True
    verifying.drain()
    with contextlib.suppress(BrokenPipeError, OSError):
        sink.close()


def _archive_error(child, code: int) -> BackupError:
    text = child.error_text()
    if "unsupported version" in text:
        return DatabaseError(
            f"{child.describe_exit(code)}: {text}",
            hint="this archive was made by a newer pg_dump: install newer PostgreSQL client tools",
        )
    if "input file does not appear to be a valid archive" in text or "did not find magic" in text:
        return IntegrityError(f"{child.describe_exit(code)}: {text}")
    return DatabaseError(f"{child.describe_exit(code)}: {text}")


# ----------------------------------------------------------------------------- restore


@dataclass(frozen=True)
class RestoreOptions:
    target_db: str | None = None
    force: bool = False
    in_place: bool = False
    drop_old: bool = False
    jobs: int = 1
    dry_run: bool = False


def suffixed(name: str, suffix: str) -> str:
    """``name + suffix`` within PostgreSQL's 63-byte identifier limit."""
    room = MAX_IDENTIFIER_BYTES - len(suffix.encode())
    base = name.encode()[:room].decode("utf-8", "ignore")
    return base + suffix


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


def maintenance_db(pg: PostgresConfig, avoid: str) -> str:
    """A database to connect to while creating, renaming and dropping ``avoid``: ``postgres``,
    else PGDATABASE, else ``template1`` (the first that exists and is not ``avoid``)."""
    candidates = [d for d in dict.fromkeys(("postgres", pg.database, "template1")) if d]
    candidates = [d for d in candidates if d != avoid]
    last: BackupError | None = None
    for database in candidates:
        try:
            with postgres.connect(pg, database):
                return database
        except DatabaseError as err:
            if "does not exist" not in err.message:
                raise
            last = err
    assert last is not None
    raise last


def conninfo_dbname(database: str) -> str:
    """``--dbname`` for a database name: as a conninfo string, so a name containing ``=`` or
    spaces is never parsed as connection options."""
    escaped = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def _is_clean_statement(command: str) -> bool:
    """A statement of pg_restore's --clean phase (DROP ...; ALTER ... DROP ...)."""
    upper = command.upper()
    return upper.startswith("DROP ") or (upper.startswith("ALTER ") and " DROP " in upper)


def run_pg_restore(
    tools: postgres.Tools,
    pg: PostgresConfig,
    database: str,
    archive,
    verifying: VerifyingReader,
    extra_args: list[str],
    jobs: int,
    clean: bool = False,
) -> None:
    """pg_restore the archive stream into ``database``; stops at the first error.

    With ``clean`` (``--in-place``), errors of the DROP phase are tolerated: pg_restore
    --clean cannot drop some objects it recreates anyway (e.g. a partition's inherited
    constraint); any other failed statement fails the restore."""
    argv = [tools.path("pg_restore"), "--no-password", *extra_args]
    argv += ["--clean", "--if-exists"] if clean else ["--exit-on-error"]
    env = pg.libpq_env(database)
    spool = None
    if jobs > 1:
        # Parallel restore needs a seekable archive: the decoded archive goes to a temp file.
        spool = tempfile.NamedTemporaryFile(prefix="pgbackup-restore-", suffix=".dump")  # noqa: SIM115
        free = shutil.disk_usage(os.path.dirname(spool.name)).free
        log.info(
            "--jobs %d: spooling the archive to %s (%.1f GB free)", jobs, spool.name, free / 1e9
        )
        while chunk := archive.read(CHUNK_BYTES):
            spool.write(chunk)
        verifying.drain()
        spool.flush()
        argv += [f"--jobs={jobs}", spool.name]
    try:
        with ChildGroup() as children:
            restorer = children.start(
                [*argv, "--dbname", conninfo_dbname(database)],
                env,
                "pg_restore",
                stdin=subprocess.DEVNULL if spool else subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            if spool is None:
                try:
                    pump(archive, restorer.stdin, verifying)
                except BackupError:
                    children.kill_all()
                    raise
            code = restorer.wait()
            if (
                code != 0
                and clean
                and restorer.failed_commands
                and all(_is_clean_statement(c) for c in restorer.failed_commands)
            ):
                log.warning(
                    "pg_restore --clean could not drop %d object(s) first; they were recreated: %s",
                    len(restorer.failed_commands),
                    "; ".join(restorer.failed_commands[:3]),
                )
                return
            if code != 0:
                raise _archive_error(restorer, code)
    finally:
        if spool is not None:
            spool.close()


def restore_database(
    config: Config,
    storages: dict,
    entries: list[Entry],
    options: RestoreOptions,
    confirm_fn: Callable[[list[str], bool], None] = confirm,
) -> str:
    """Restore the backup in ``entries`` (one per destination, tried in order)."""
    pg = config.postgres
    first = entries[0].manifest
    target = options.target_db or first.database
    if not target:
        raise ConfigError("--target-db is required to restore this backup")
    postgres.check_identifier(target, "--target-db")
    admin_db = maintenance_db(pg, target)
    with postgres.connect(pg, admin_db) as conn:
        server = postgres.server_info(conn)
        exists = postgres.database_exists(conn, target)
        owner = postgres.database_owner(conn, target) if exists else None
    tools = postgres.choose_restore_tools(server, first.pg_dump_version, config.pg_bin_dirs)
    dump_major = _major(first.server_version)
    if dump_major and dump_major > server.major:
        log.warning(
            "this backup comes from PostgreSQL %s and the target server is %s: restoring into "
            "an older major may fail on newer syntax",
            first.server_version,
            server.version,
        )
    mode = (
        "in place (--clean)"
        if options.in_place
        else ("into a new database, then swap names" if exists else "create the database")
    )
    lines = [
        "⚠️  WARNING: DATABASE RESTORE",
        f"Server:   {pg.display_host} (PostgreSQL {server.version})",
        f"Database: {target}" + (" (exists: its content will be REPLACED)" if exists else " (new)"),
        f"Backup:   {first.name} ({first.size_bytes / 1e6:.2f} MB, "
        f"{first.created_at:%Y-%m-%d %H:%M:%S} UTC) from {entries[0].destination}",
        f"Mode:     {mode}",
    ]
    if exists and not options.in_place:
        lines.append(
            "The current database is dropped."
            if options.drop_old
            else "The current database is kept, renamed <db>_pre_restore_<timestamp>."
        )
    if options.in_place:
        lines.append("This will OVERWRITE the current database! Its data will be LOST.")
    if options.dry_run:
        for line in lines:
            print(line)
        print("dry run: nothing was changed")
        return target
    confirm_fn(lines, options.force)
    if options.in_place and not exists:
        raise ConfigError(f"--in-place: database {target!r} does not exist")
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
                target,
                exists,
                owner,
                admin_db,
                options,
            )
            return target
        except StorageError as err:
            last_error = err
            continue
    assert last_error is not None
    raise last_error


def _restore_from(
    config: Config,
    storage,
    entry: Entry,
    tools: postgres.Tools,
    target: str,
    exists: bool,
    owner: str | None,
    admin_db: str,
    options: RestoreOptions,
) -> None:
    pg = config.postgres
    m = entry.manifest
    started = time.monotonic()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    log.info(
        "restoring %s from %s into %s",
        m.name,
        entry.destination,
        target,
        extra={"stage": "restore", "destination": entry.destination},
    )
    if options.in_place:
        # Check the whole object before touching the only copy of the data.
        verifying, archive = open_archive(config, storage, entry)
        while archive.read(CHUNK_BYTES):
            pass
        verifying.drain()
        verifying, archive = open_archive(config, storage, entry)
        run_pg_restore(tools, pg, target, archive, verifying, [], options.jobs, clean=True)
        log.info(
            "restored %s into %s in place in %.1f s", m.name, target, time.monotonic() - started
        )
        return
    fresh = suffixed(target, f"_restoring_{stamp}") if exists else target
    with postgres.connect(pg, admin_db) as conn:
        postgres.create_database(conn, fresh, owner)
    try:
        verifying, archive = open_archive(config, storage, entry)
        run_pg_restore(tools, pg, fresh, archive, verifying, [], options.jobs)
    except BaseException:
        log.error("restore failed: dropping %s; %s is unchanged", fresh, target)
        with contextlib.suppress(BackupError), postgres.connect(pg, admin_db) as conn:
            postgres.drop_database(conn, fresh)
        raise
    if exists:
        old = suffixed(target, f"_pre_restore_{stamp}")
        with postgres.connect(pg, admin_db) as conn:
            postgres.rename_database(conn, target, old)
            try:
                postgres.rename_database(conn, fresh, target)
            except BackupError:
                postgres.rename_database(conn, old, target)
                raise
            if options.drop_old:
                postgres.drop_database(conn, old)
                log.info("dropped the previous database (--drop-old)")
            else:
                log.info("previous database kept as %s", old)
    log.info(
        "restored %s into %s in %.1f s (%d bytes, sha256 ok)",
        m.name,
        target,
        time.monotonic() - started,
        verifying.size,
        extra={"stage": "restore", "seconds": round(time.monotonic() - started, 3)},
    )


def _major(version: str) -> int | None:
    try:
        return int(version.split(".")[0])
    except (ValueError, AttributeError):
        return None


def archive_tools(config: Config, dump_version: str) -> postgres.Tools:
    """pg_restore for reading an archive without a server: the newest installed, which must
    be at least as new as the pg_dump that made it."""
    tools = postgres.installed_tools(config.pg_bin_dirs)
    newest = tools[0] if tools else None
    dump_major = _major(dump_version) or 0
    if newest is None or newest.major < dump_major:
        raise DatabaseError(
            f"this backup was made by pg_dump {dump_version}; no pg_restore here can read it",
            hint=f"install the PostgreSQL {dump_major} client tools",
        )
    return newest


def restore_globals(
    config: Config, storages: dict, entries: list[Entry], force: bool, dry_run: bool
) -> None:
    """Replay roles and tablespaces (``pg_dumpall --globals-only``) with psql. Roles that
    already exist produce errors that are reported and skipped, so the rest still applies."""
    pg = config.postgres
    entry = entries[0]
    m = entry.manifest
    admin_db = maintenance_db(pg, "")
    with postgres.connect(pg, admin_db) as conn:
        server = postgres.server_info(conn)
    tools = postgres.choose_tools(server, config.pg_bin_dirs)
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
    verifying, archive = open_archive(config, storages[entry.destination], entry)
    with ChildGroup() as children:
        psql = children.start(
            [
                tools.path("psql"),
                "--no-password",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=0",
                "--dbname",
                admin_db,
            ],
            pg.libpq_env(admin_db),
            "psql",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        pump(archive, psql.stdin, verifying)
        children.finish()
    skipped = [line for line in psql.stderr_tail if "ERROR" in line]
    for line in skipped:
        log.warning("globals: %s", line)
    log.info("restored globals %s (%d statements reported errors)", m.name, len(skipped))
