"""Reading a stored backup: the verified download stream, decoding, and feeding pg_restore.

``open_archive`` returns the object as stored, counted and hashed on the way
(``VerifyingReader``: a size or sha256 mismatch with the manifest raises ``IntegrityError`` at the
end of the stream, before the caller trusts what it read), and the decrypted, decompressed
archive. ``run_pg_restore`` feeds that archive to pg_restore and checks its exit status.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from typing import IO, BinaryIO

from backup import postgres
from backup.catalog import Entry
from backup.codec import open_decoder
from backup.config import Config, PostgresConfig
from backup.errors import BackupError, DatabaseError, IntegrityError, StorageError
from backup.processes import ChildGroup

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


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
    if m.encrypted and m.encryption:
        from backup.encryption import identity_matches

        if identity_matches(config.codec, list(m.encryption.get("recipients", []))) is False:
            raw.close()
            raise IntegrityError(
                f"{m.name} was encrypted to other keys than BACKUP_AGE_IDENTITY",
                hint="use the private key of one of the recipients recorded in the manifest "
                f"({', '.join(m.encryption.get('recipients', []))})",
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


def archive_error(child, code: int) -> BackupError:
    text = child.error_text()
    if "unsupported version" in text:
        return DatabaseError(
            f"{child.describe_exit(code)}: {text}",
            hint="this archive was made by a newer pg_dump: install newer PostgreSQL client tools",
        )
    if "input file does not appear to be a valid archive" in text or "did not find magic" in text:
        return IntegrityError(f"{child.describe_exit(code)}: {text}")
    return DatabaseError(
        f"{child.describe_exit(code)}: {text}",
        hint="pg_restore stopped at the first failing statement (--exit-on-error): the error "
        "above names it",
    )


# ----------------------------------------------------------------------------- restore


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
                raise archive_error(restorer, code)
    finally:
        if spool is not None:
            spool.close()


def archive_tools(config: Config, dump_version: str) -> postgres.Tools:
    """pg_restore for reading an archive without a server: the newest installed, which must
    be at least as new as the pg_dump that made it."""
    tools = postgres.installed_tools(config.pg_bin_dirs)
    newest = tools[0] if tools else None
    dump_major = postgres.major_of(dump_version) or 0
    if newest is None or newest.major < dump_major:
        raise DatabaseError(
            f"this backup was made by pg_dump {dump_version}; no pg_restore here can read it",
            hint=f"install the PostgreSQL {dump_major} client tools",
        )
    return newest
