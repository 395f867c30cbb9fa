"""pg_restore fed from a stream: one run into a database, its exit status checked.

The archive comes from ``backup.stream.readback`` (downloaded, checksum-verified on the way,
decrypted, decompressed); this module only knows it as something to read and, once read, to
drain (so the stored object's checksum is checked even when pg_restore stops reading early).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Protocol

from backup.config import PostgresConfig
from backup.errors import BackupError, DatabaseError, IntegrityError
from backup.postgres.processes import Child, ChildGroup, Readable, pump
from backup.postgres.tools import Tools, pg_restore_argv

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


class Drainable(Protocol):
    def drain(self) -> None: ...


def archive_error(child: Child, code: int) -> BackupError:
    """What a failed pg_restore means: a too-new archive, a damaged one, or a failed statement."""
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


def _is_clean_statement(command: str) -> bool:
    """A statement of pg_restore's --clean phase (DROP ...; ALTER ... DROP ...)."""
    upper = command.upper()
    return upper.startswith("DROP ") or (upper.startswith("ALTER ") and " DROP " in upper)


def run_pg_restore(
    tools: Tools,
    pg: PostgresConfig,
    database: str,
    archive: Readable,
    stored: Drainable,
    extra_args: Sequence[str],
    jobs: int,
    clean: bool = False,
) -> None:
    """pg_restore the archive stream into ``database``; stops at the first error.

    With ``jobs`` > 1 the archive is first written to a temporary file (parallel pg_restore
    needs a seekable file). With ``clean`` (``--in-place``), errors of the DROP phase are
    tolerated: pg_restore --clean cannot drop some objects it recreates anyway (e.g. a
    partition's inherited constraint); any other failed statement fails the restore."""
    env = pg.libpq_env(database)
    spool = None
    if jobs > 1:
        spool = tempfile.NamedTemporaryFile(prefix="pgbackup-restore-", suffix=".dump")  # noqa: SIM115
        free = shutil.disk_usage(os.path.dirname(spool.name)).free
        log.info(
            "--jobs %d: spooling the archive to %s (%.1f GB free)", jobs, spool.name, free / 1e9
        )
        while chunk := archive.read(CHUNK_BYTES):
            spool.write(chunk)
        stored.drain()
        spool.flush()
    argv = pg_restore_argv(
        tools,
        database,
        clean=clean,
        archive_path=spool.name if spool else None,
        jobs=jobs,
        extra_args=extra_args,
    )
    try:
        with ChildGroup() as children:
            restorer = children.start(
                argv,
                env,
                "pg_restore",
                stdin=subprocess.DEVNULL if spool else subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            if spool is None:
                try:
                    pump(archive, restorer.stdin, stored.drain)
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
