"""pg_restore of chosen tables (``restore --table``): the archive's table of contents read, and
the entries ``backup.postgres.toc`` selected restored in one transaction, from a stream or a
folder.

A stream (custom format) is restored through psql: ``pg_restore --use-list L --file -`` writes
the SQL, a relay thread copies it into ``psql`` inside ``BEGIN``, and ``COMMIT`` is sent only
after the whole stored object was read and its size and sha256 matched (pg_restore stops
reading once it has the tables it wants; the rest is still read and checked). A damaged object,
a failed statement or a killed job ends psql's session without ``COMMIT``: nothing of it is
left in the target. A folder (directory format) was checked file by file before it was
written; ``pg_restore --single-transaction`` restores it.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from backup.config import PostgresConfig
from backup.errors import BackupError, DatabaseError, IntegrityError
from backup.postgres import toc, toc_names
from backup.postgres.pg_restore import CHUNK_BYTES, Drainable, archive_error, run_reader_tool
from backup.postgres.processes import Child, ChildGroup, Readable, pump
from backup.postgres.tools import Tools, conninfo_dbname


@dataclass(frozen=True)
class ArchiveToc:
    """An archive's table of contents: its entries and the exact names of its tables."""

    entries: list[toc.TocEntry]
    tables: dict[int, toc.TableName]
    names: dict[int, toc_names.ObjectName] = field(default_factory=dict)
    """The exact names of its tables, views, sequences, schemas, types and functions."""
    head_bytes: int = 0
    """For a stream: how many of the archive's first bytes were read to list it."""
    head_sha256: str = ""
    """... and their sha256: a second read must begin with the same bytes."""


def _list_argv(tools: Tools, archive_path: str | None) -> list[str]:
    return [
        tools.path("pg_restore"),
        "--list",
        "--verbose",
        *([archive_path] if archive_path else []),
    ]


def _script_argv(
    tools: Tools, list_path: str, archive_path: str | None, verbose: bool, clean: bool = False
) -> list[str]:
    argv = [tools.path("pg_restore"), "--use-list", list_path, "--file", "-"]
    argv += ["--clean", "--if-exists"] if clean else []
    return argv + (["--verbose"] if verbose else []) + ([archive_path] if archive_path else [])


def _psql_argv(tools: Tools, database: str) -> list[str]:
    """psql running the script on stdin, stopping at its first error."""
    argv = [tools.path("psql"), "--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    return [*argv, "--dbname", conninfo_dbname(database)]


def _read_toc(tools: Tools, archive_path: str | None, spool: IO[bytes] | None) -> ArchiveToc:
    """List the archive at ``archive_path`` (or in ``spool``, from its start) and name its
    tables. Needs no server."""

    def run(argv: list[str], what: str) -> str:
        if spool is None:
            return run_reader_tool(argv, what)
        spool.flush()
        spool.seek(0)
        return run_reader_tool(argv, what, stdin=spool)

    entries = toc.parse_listing(run(_list_argv(tools, archive_path), "the table of contents"))
    named = "".join(e.line + "\n" for e in entries if e.kind in toc_names.NAMED_KINDS)
    names: dict[int, toc_names.ObjectName] = {}
    if named:
        with tempfile.NamedTemporaryFile("w", prefix="pgbackup-tables-", suffix=".list") as lst:
            lst.write(named)
            lst.flush()
            script = run(_script_argv(tools, lst.name, archive_path, True), "the objects' names")
        names = toc_names.object_names(script)
    tables = {
        dump_id: toc.TableName(name.schema or "", name.name)
        for dump_id, name in names.items()
        if name.kind == "TABLE"
    }
    return ArchiveToc(entries, tables, names)


def folder_toc(tools: Tools, folder: str) -> ArchiveToc:
    """The table of contents of the directory archive in ``folder`` (its toc.dat)."""
    return _read_toc(tools, folder, None)


def stream_toc(
    tools: Tools, stored: Drainable, archive: Readable, close: Callable[[], None]
) -> ArchiveToc:
    """The table of contents at the start of ``archive``: copied to a temporary file while
    ``pg_restore --list`` reads it, until pg_restore has it all; the rest is not read
    (``close()`` ends the download), so this read is not checked. The bytes it read are
    recorded (count and sha256) for ``restore_stream`` to compare with its own, checked, read.
    A listing that fails reads the object to its end first: a damaged object is exit 5."""
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile(prefix="pgbackup-toc-") as spool:
        with ChildGroup() as children:
            lister = children.start(
                [tools.path("pg_restore"), "--list"],
                {},
                "pg_restore --list",
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            try:
                while chunk := archive.read(CHUNK_BYTES):
                    spool.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    lister.stdin.write(chunk)
            except BrokenPipeError:
                pass  # it has read the whole table of contents
            with contextlib.suppress(OSError):
                lister.stdin.close()
            code = lister.wait()
            if code != 0:
                stored.drain()  # IntegrityError here when the object is damaged
                raise archive_error(lister, code)
        with contextlib.suppress(Exception):
            close()
        found = _read_toc(tools, None, spool)
    return ArchiveToc(found.entries, found.tables, found.names, size, digest.hexdigest())


class _StatementFailed(Exception):
    """psql stopped at a failed statement: the rest of the archive is of no use."""


class _HeadCheck:
    """Passes ``source`` through, hashing its first ``size`` bytes; raises
    ``_StatementFailed`` as soon as ``stopped()`` says psql has exited (a failed statement),
    so the restore fails without downloading the rest of the object first."""

    def __init__(self, source: Readable, size: int, stopped: Callable[[], bool]) -> None:
        self.source = source
        self.size = size
        self.stopped = stopped
        self.seen = 0
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self.stopped():
            raise _StatementFailed
        chunk = self.source.read(size)
        if self.seen < self.size:
            part = chunk[: self.size - self.seen]
            self.digest.update(part)
            self.seen += len(part)
        return chunk


class _Relay:
    """A thread copying pg_restore's script (``source``) into psql's stdin (``sink``). When
    psql stops (a failed statement), the rest of the script is read and dropped, so pg_restore
    is never left blocked on a full pipe. ``sink`` is not closed: the caller writes ``COMMIT``."""

    def __init__(self, source: IO[bytes], sink: IO[bytes]) -> None:
        self.source = source
        self.sink = sink
        self.broken = False
        self.thread = threading.Thread(target=self._copy, name="sql-relay", daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        while chunk := self.source.read(CHUNK_BYTES):
            if self.broken:
                continue
            try:
                self.sink.write(chunk)
            except OSError:
                self.broken = True


def restore_stream(
    tools: Tools,
    pg: PostgresConfig,
    database: str,
    archive: Readable,
    stored: Drainable,
    found: ArchiveToc,
    selection: toc.Selection,
    clean: bool = False,
) -> None:
    """Restore ``selection`` from the archive stream into ``database`` in one transaction,
    committed only after ``stored.drain()`` checked the whole object and the archive began
    with the bytes ``found`` was listed from; ``clean``: its entries dropped first when they
    exist (``--clean --if-exists``), in the same transaction. Any failure: nothing committed."""
    with (
        tempfile.NamedTemporaryFile("w", prefix="pgbackup-table-", suffix=".list") as lst,
        ChildGroup() as children,
    ):
        lst.write(selection.use_list())
        lst.flush()
        script = children.start(
            _script_argv(tools, lst.name, None, False, clean),
            {},
            "pg_restore",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        psql = children.start(
            _psql_argv(tools, database),
            pg.libpq_env(database),
            "psql",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        # BEGIN first and COMMIT last are ours: if this process dies, psql reads the end of
        # its input inside the transaction, and the server rolls it back.
        psql.stdin.write(b"BEGIN;\n")
        psql.stdin.flush()
        relay = _Relay(script.stdout, psql.stdin)
        head = _HeadCheck(archive, found.head_bytes, lambda: psql.popen.poll() is not None)
        try:
            try:
                pump(head, script.stdin, stored.drain)  # IntegrityError: the object is damaged
            except _StatementFailed:
                _check(psql, psql.wait(), failed=True)
            _check(script, script.wait())
            relay.thread.join()
            if head.seen != found.head_bytes or head.digest.hexdigest() != found.head_sha256:
                raise IntegrityError(
                    "the archive's table of contents read twice differs: the destination "
                    "returned other bytes the first time",
                    hint="nothing was changed; run the restore again",
                )
            if relay.broken or psql.popen.poll() is not None:
                _check(psql, psql.wait(), failed=True)
            psql.stdin.write(b"COMMIT;\n")
            psql.stdin.close()
            _check(psql, psql.wait())
        except BaseException:
            children.kill_all()  # psql ends without COMMIT: the transaction is rolled back
            raise


_MISSING_HINT = (
    "nothing was committed. A table needs what it uses to exist in the target: its schema's "
    "types, the functions its defaults and triggers call, its owner and the roles of its "
    "grants, the tables its foreign keys point to; create them first (or restore the whole "
    "backup with --target-db NEW and take the table from there)"
)


_TAKEN_HINT = (
    "nothing was committed. A name the table's indexes, constraints or sequences use is taken "
    "in the target (a table renamed keeps its index and sequence names): move the old table "
    "aside with ALTER TABLE ... SET SCHEMA, which takes them along, or restore into another "
    "database (--target-db)"
)


def _check(child: Child, code: int, failed: bool = False) -> None:
    if code != 0 or failed:
        error = archive_error(child, code)
        if isinstance(error, DatabaseError) and "unsupported version" not in error.message:
            taken = "already exists" in error.message
            raise DatabaseError(error.message, hint=_TAKEN_HINT if taken else _MISSING_HINT)
        raise error


def restore_folder_tables(
    tools: Tools,
    pg: PostgresConfig,
    database: str,
    folder: str,
    selection: toc.Selection,
    clean: bool = False,
) -> None:
    """Restore ``selection`` from the directory archive in ``folder`` into ``database`` with
    ``pg_restore --single-transaction`` (``clean``: ``--clean --if-exists``, its entries
    dropped first in the same transaction): all of it or nothing."""
    with (
        tempfile.NamedTemporaryFile("w", prefix="pgbackup-table-", suffix=".list") as lst,
        ChildGroup() as children,
    ):
        lst.write(selection.use_list())
        lst.flush()
        argv = [tools.path("pg_restore"), "--no-password", "--exit-on-error"]
        argv += ["--single-transaction", "--use-list", lst.name, "--dbname"]
        argv[1:1] = ["--clean", "--if-exists"] if clean else []
        argv += [conninfo_dbname(database), folder]
        restorer = children.start(
            argv, pg.libpq_env(database), "pg_restore", stdout=subprocess.DEVNULL
        )
        try:
            _check(restorer, restorer.wait())
        except BackupError:
            children.kill_all()
            raise
