"""pg_restore fed from a stream: one run into a database, its exit status checked.

The archive comes from ``backup.stream.readback`` (downloaded, checksum-verified on the way,
decrypted, decompressed); this module only knows it as something to read and, once read, to
drain (so the stored object's checksum is checked even when pg_restore stops reading early).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from backup.config import PostgresConfig
from backup.errors import BackupError, DatabaseError, IntegrityError
from backup.postgres import properties
from backup.postgres.processes import Child, ChildGroup, Readable, child_env, pump, read_ahead
from backup.postgres.tools import (
    Tools,
    pg_restore_argv,
    pg_restore_database_script_argv,
    pg_restore_database_toc_argv,
    pg_restore_list_argv,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
# A custom-format archive starts with its whole table of contents (the definitions of every
# object, no data); the database's properties are read from that head, copied to a temporary
# file as the archive streams by. 16 MiB holds the TOC of tens of thousands of objects.
HEAD_LIMIT_BYTES = 16 * 1024 * 1024
TOOL_TIMEOUT_S = 120


class Drainable(Protocol):
    def drain(self) -> None: ...


class HeadRecorder:
    """Reads through ``source`` and keeps a copy of its first ``limit_bytes`` in a temporary
    file (in ``TMPDIR``; memory bound: none, the copy is on disk). A context manager: leaving
    it deletes the copy."""

    def __init__(self, source: Readable, limit_bytes: int = HEAD_LIMIT_BYTES) -> None:
        self.source = source
        self.limit_bytes = limit_bytes
        self.size = 0
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="pgbackup-toc-")  # noqa: SIM115

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        room = self.limit_bytes - self.size
        if chunk and room > 0:
            kept = chunk[:room]
            self.file.write(kept)
            self.size += len(kept)
        return chunk

    def __enter__(self) -> HeadRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def read_database_properties(
    tools: Tools,
    head: HeadRecorder,
    reopen: Callable[[], tuple[Drainable, Readable]] | None = None,
) -> properties.DatabaseProperties:
    """The database's own properties in an archive, from its first bytes (``HeadRecorder``):
    ``pg_restore --create --list`` finds their entries, ``pg_restore --create --use-list``
    prints them as SQL. Needs no server.

    When ``head`` does not hold the whole table of contents (more than its ``limit_bytes``)
    and ``reopen`` is given, the archive is read again: its beginning is spooled to the same
    temporary file until pg_restore has read the table of contents, the rest is read to its
    end so that the stored object's checksum is checked again."""
    spool = head.file
    try:
        toc = _run_reader(pg_restore_database_toc_argv(tools), spool)
    except DatabaseError:
        if reopen is None or head.size < head.limit_bytes:
            raise
        log.info(
            "the archive's table of contents is larger than %d MiB: reading it again",
            head.limit_bytes // 2**20,
        )
        spool.seek(0)
        spool.truncate()
        _spool_toc(tools, *reopen(), spool)
        toc = _run_reader(pg_restore_database_toc_argv(tools), spool)
    lines = properties.database_toc_lines(toc)
    if not lines:
        return properties.DatabaseProperties()
    with tempfile.NamedTemporaryFile("w", prefix="pgbackup-dbprops-", suffix=".list") as listing:
        listing.write("\n".join(lines) + "\n")
        listing.flush()
        script = _run_reader(pg_restore_database_script_argv(tools, listing.name), spool)
    return properties.parse_script(script)


def _spool_toc(tools: Tools, stored: Drainable, archive: Readable, spool: IO[bytes]) -> None:
    """Copy the archive to ``spool`` while ``pg_restore --list`` reads it; once it stops (it
    has the whole table of contents), read the rest to its end without keeping it."""
    with ChildGroup() as children:
        lister = children.start(
            pg_restore_database_toc_argv(tools),
            {},
            "pg_restore --list",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        assert lister.stdin is not None
        reading = True
        while chunk := archive.read(CHUNK_BYTES):
            if not reading:
                continue
            spool.write(chunk)
            try:
                lister.stdin.write(chunk)
            except BrokenPipeError:
                reading = False
        stored.drain()
        with contextlib.suppress(BrokenPipeError, OSError):
            lister.stdin.close()
        children.finish()


def _run_reader(
    argv: list[str], archive: IO[bytes], what: str = "the database's properties"
) -> str:
    archive.flush()
    archive.seek(0)
    return run_reader_tool(argv, what, stdin=archive)


def run_reader_tool(argv: list[str], what: str, stdin: IO[bytes] | int = subprocess.DEVNULL) -> str:
    """The output of a pg_restore that only reads an archive (``stdin``, or a path in
    ``argv``) and connects nowhere; a ``DatabaseError`` naming ``what`` when it fails."""
    try:
        done = subprocess.run(
            argv,
            stdin=stdin,
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
            env=child_env(),  # it reads an archive and connects nowhere: no secret
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise DatabaseError(f"{argv[0]} could not read {what} from the archive: {err}") from err
    if done.returncode != 0:
        text = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DatabaseError(
            f"pg_restore could not read {what} from the archive: "
            + (text[-1] if text else f"exit {done.returncode}")
        )
    return done.stdout.decode("utf-8")


@dataclass(frozen=True)
class ArchiveTables:
    """The tables of an archive's table of contents, by their OID on the dumped server."""

    tables: frozenset[int]
    """Every table the archive creates."""
    with_data: frozenset[int]
    """The tables whose rows it holds (a TABLE DATA entry)."""


def toc_tables(listing: str) -> ArchiveTables:
    """The TABLE and TABLE DATA entries of ``pg_restore --list`` output, whose lines read
    ``<id>; <tableoid> <oid> <desc> <schema> <name> <owner>``. Read by OID, the table's own
    for both kinds of entry (pg_dump's makeTableDataInfo), never by names, which may hold
    spaces (``"Odd Schema"."Mixed Case Table"``)."""
    tables: set[int] = set()
    with_data: set[int] = set()
    for line in listing.splitlines():
        if line.startswith(";"):
            continue
        parts = line.partition("; ")[2].split(" ", 2)
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        entry = parts[2]
        if entry.startswith("TABLE DATA "):
            with_data.add(int(parts[1]))
        elif entry.startswith("TABLE ") and not entry.startswith("TABLE ATTACH "):
            tables.add(int(parts[1]))
    return ArchiveTables(frozenset(tables), frozenset(with_data))


def read_archive_tables(tools: Tools, head: IO[bytes]) -> ArchiveTables:
    """The tables of the archive whose first bytes (its table of contents) are in ``head``
    (``pg_restore --list``; needs no server). ``DatabaseError`` when it cannot be read."""
    listing = _run_reader(pg_restore_list_argv(tools), head, "the table of contents")
    return toc_tables(listing)


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

    One job: the stream goes straight into pg_restore's stdin (read ahead by a thread, so the
    download and decompression overlap with the restore). With ``jobs`` > 1 parallel pg_restore
    needs a seekable file: the archive is spooled to a temporary file (in ``TMPDIR``) and,
    while it downloads, ``--section=pre-data`` (the schema) is already restored from the
    spooled head; the data and the indexes (``--section=data --section=post-data``, ``jobs``
    workers) start once the whole archive is there. With ``clean`` (``--in-place``), errors of
    the DROP phase are tolerated: pg_restore --clean cannot drop some objects it recreates
    anyway (e.g. a partition's inherited constraint); any other failed statement fails the
    restore."""
    env = pg.libpq_env(database)
    if jobs <= 1:
        argv = pg_restore_argv(tools, database, clean=clean, extra_args=extra_args)
        with ChildGroup() as children:
            restorer = children.start(
                argv, env, "pg_restore", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
            )
            try:
                pump(archive, restorer.stdin, stored.drain)
            except BackupError:
                children.kill_all()
                raise
            check_exit(restorer, restorer.wait(), clean)
        return
    with tempfile.NamedTemporaryFile(prefix="pgbackup-restore-", suffix=".dump") as spool:
        free = shutil.disk_usage(os.path.dirname(spool.name)).free
        log.info(
            "--jobs %d: spooling the archive to %s (%.1f GB free)", jobs, spool.name, free / 1e9
        )
        started = time.monotonic()
        sections: tuple[str, ...] = ()
        with ChildGroup() as children:
            if clean:
                # --clean drops before it creates, across every section: one run, after the spool.
                _spool(archive, stored, spool, None)
            else:
                schema = children.start(
                    pg_restore_argv(tools, database, extra_args=extra_args, sections=["pre-data"]),
                    env,
                    "pg_restore --section=pre-data",
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                )
                _spool(archive, stored, spool, schema)
                check_exit(schema, schema.wait(), clean)
                sections = ("data", "post-data")
            log.info(
                "--jobs %d: %.1f GB spooled in %.1f s%s; restoring %s",
                jobs,
                spool.tell() / 1e9,
                time.monotonic() - started,
                "" if clean else ", the schema restored meanwhile",
                "everything" if clean else "the data and indexes",
            )
            argv = pg_restore_argv(
                tools,
                database,
                clean=clean,
                archive_path=spool.name,
                jobs=jobs,
                extra_args=extra_args,
                sections=sections,
            )
            restorer = children.start(
                argv, env, "pg_restore", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
            check_exit(restorer, restorer.wait(), clean)


def _spool(archive: Readable, stored: Drainable, spool: IO[bytes], reader: Child | None) -> None:
    """Write the archive to ``spool``, the object drained after it (checksum checked). With
    ``reader``, a thread feeds it the spooled bytes from the start, never holding up the
    spool: a reader that stops (pg_restore --section=pre-data once it has the table of
    contents) is left alone, one that fails stops the spool at once."""
    feeder = _SpoolFeeder(spool.fileno(), reader.stdin) if reader else None
    try:
        for chunk in read_ahead(archive):
            spool.write(chunk)
            if feeder and reader:
                spool.flush()
                feeder.advance(len(chunk))
                code = reader.popen.poll()
                if code not in (None, 0):
                    raise archive_error(reader, code)
        stored.drain()
        spool.flush()
    except BaseException:
        if reader:
            reader.kill()  # so the feeder is not left writing to a child that has stopped reading
        raise
    finally:
        if feeder:
            feeder.finish()


class _SpoolFeeder:
    """A thread copying a growing spool file into a child's stdin, by offset (``os.pread``),
    as far as the spool has been written. Memory bound: one ``CHUNK_BYTES`` chunk."""

    def __init__(self, fd: int, sink: IO[bytes]) -> None:
        self.fd = fd
        self.sink = sink
        self.written = 0
        self.complete = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._feed, name="spool-feeder", daemon=True)
        self.thread.start()

    def advance(self, nbytes: int) -> None:
        with self.changed:
            self.written += nbytes
            self.changed.notify()

    def finish(self) -> None:
        """No more bytes; waits until the child has taken them all, stopped reading, or
        exited (it is killed with its group on a failure)."""
        with self.changed:
            self.complete = True
            self.changed.notify()
        self.thread.join()

    def _feed(self) -> None:
        offset = 0
        try:
            while True:
                with self.changed:
                    while offset >= self.written and not self.complete:
                        self.changed.wait()
                    end, complete = self.written, self.complete
                if offset >= end and complete:
                    break
                while offset < end:
                    data = os.pread(self.fd, min(CHUNK_BYTES, end - offset), offset)
                    if not data:
                        return
                    self.sink.write(data)
                    offset += len(data)
        except OSError:
            pass  # the child stopped reading (BrokenPipeError) or died: its exit status says
        finally:
            with contextlib.suppress(OSError):
                self.sink.close()


def check_exit(restorer: Child, code: int, clean: bool) -> None:
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
