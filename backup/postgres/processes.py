"""Checked child processes: start, stream, wait, and kill on failure.

Every child gets an argv list (never a shell), an environment built from our config and nothing
else of ours (``child_env``: the password travels there, never in argv, and only to a child
that connects) and a thread that drains its stderr into the log and
keeps the last lines for the error message. ``ChildGroup`` is a context manager: leaving it
with an exception kills and reaps every child it started; ``finish()`` waits for each and raises
on a non-zero exit, so callers check the children *before* an upload is finalised. ``pump``
feeds a stream into a child's stdin.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import queue
import signal
import subprocess
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Protocol

from backup.errors import BackupError, DatabaseError

log = logging.getLogger(__name__)

# Only these are inherited from our own environment: enough to run the tools, nothing secret.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER")
STDERR_LINES_KEPT = 20
KILL_GRACE_S = 5.0
PUMP_CHUNK_BYTES = 1024 * 1024
# Chunks read ahead of a child reading its stdin (read_ahead): 4 MiB.
READ_AHEAD_CHUNKS = 4
_READ_AHEAD_POLL_S = 0.2
# A child's stdin and stdout pipes are widened to this (Linux: F_SETPIPE_SZ; 1 MiB is the
# unprivileged maximum by default), so 1 MiB passes in one wake-up of the reader, not sixteen.
PIPE_BYTES = 1024 * 1024


# Every child still running, whatever thread started it: a stop of several dumps at once
# (stream/concurrent.py) reaches a worker blocked reading a child's pipe by ending the child.
_running: weakref.WeakSet[Child] = weakref.WeakSet()
_running_lock = threading.Lock()


def terminate_running() -> int:
    """Send SIGTERM to every child of this process that is still running; return how many.
    Their own ``ChildGroup`` still reaps them (and kills any that ignores it)."""
    with _running_lock:
        children = list(_running)
    sent = 0
    for child in children:
        if child.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                child.popen.send_signal(signal.SIGTERM)
                sent += 1
    return sent


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def child_env(libpq: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a child process: the few harmless variables of ours
    (``_INHERITED``), plus ``libpq`` (``PostgresConfig.libpq_env``: the connection variables
    and ``PGPASSWORD``) for a process that connects: pg_dump, pg_dumpall, pg_restore into a
    database, psql. A process that does not connect (``pg_dump --version``, ``pg_restore
    --list``) gets nothing else: no libpq variable, no secret of the job."""
    env = {k: v for k in _INHERITED if (v := os.environ.get(k)) is not None}
    env.update(libpq or {})
    return env


def _widen_pipe(fd: int) -> None:
    """Best effort: a pipe that cannot be widened (not Linux, a lower pipe-max-size) keeps
    its 64 KiB."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class Child:
    """One running child process with its stderr drained by a thread."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        name: str,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = subprocess.PIPE,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        # pg_restore follows each failed statement with "Command was: ..."; kept (bounded) so
        # a caller can tell which statements failed.
        self.failed_commands: list[str] = []
        log.debug("starting %s: %s", name, " ".join(self.argv))
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=child_env(env),
                close_fds=True,
            )
        except OSError as err:
            raise DatabaseError(
                f"cannot start {name}: {err.strerror}",
                hint=f"is {self.argv[0]} installed? The image ships it; elsewhere install "
                "the PostgreSQL client tools",
            ) from err
        with _running_lock:
            _running.add(self)
        for end, kind in ((self.popen.stdin, stdin), (self.popen.stdout, stdout)):
            if kind == subprocess.PIPE and end is not None:
                _widen_pipe(end.fileno())
        self._drain = threading.Thread(target=self._read_stderr, name=f"{name}-stderr", daemon=True)
        self._drain.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.popen.stdout is not None
        return self.popen.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.popen.stdin is not None
        return self.popen.stdin

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_tail.append(line)
                if line.startswith("Command was:") and len(self.failed_commands) < 10_000:
                    self.failed_commands.append(line.removeprefix("Command was:").strip())
                log.debug("%s: %s", self.name, line)

    def wait(self) -> int:
        code = self.popen.wait()
        self._drain.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
        self.popen.wait()
        for stream in (self.popen.stdout, self.popen.stdin, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        self._drain.join(timeout=5)

    def error_text(self) -> str:
        """The child's last meaningful stderr lines, for the error message."""
        lines = [line for line in self.stderr_tail if "error" in line.lower()] or list(
            self.stderr_tail
        )
        return " / ".join(lines[-3:]) or "no error output"

    def describe_exit(self, code: int) -> str:
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"{self.name} was killed by {signal.Signals(-code).name}"
        return f"{self.name} exited with status {code}"


ErrorFactory = Callable[[Child, int], BackupError]


def _database_error(child: Child, code: int) -> BackupError:
    return DatabaseError(f"{child.describe_exit(code)}: {child.error_text()}")


class ChildGroup:
    """Children started together; all are reaped whatever happens."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        name: str,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = subprocess.PIPE,
    ) -> Child:
        child = Child(argv, env, name, stdin=stdin, stdout=stdout)
        self.children.append(child)
        return child

    def finish(self, error: ErrorFactory = _database_error) -> None:
        """Wait for every child; raise for the first that failed (the others are killed)."""
        for child in self.children:
            code = child.wait()
            if code != 0:
                self.kill_all()
                raise error(child, code)

    def kill_all(self) -> None:
        for child in self.children:
            child.kill()

    def __enter__(self) -> ChildGroup:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # On success finish() has already reaped everyone; on failure nobody may outlive us.
        self.kill_all()


def read_ahead(
    source: Readable, chunk_bytes: int = PUMP_CHUNK_BYTES, depth: int = READ_AHEAD_CHUNKS
) -> Iterator[bytes]:
    """The chunks of ``source``, read by a thread while the caller consumes the previous ones,
    so that downloading, checking and decompressing (the thread) overlap with pg_restore
    reading its pipe (the caller). An error of ``source`` is raised in the caller, in order.

    Memory bound: ``depth`` chunks of at most ``chunk_bytes`` in the queue, plus the one the
    thread holds and the one the caller holds. When the caller stops early (an error, a
    signal), the thread stops at its next chunk; one stuck in a hung download is a daemon
    thread and does not keep the process alive."""
    chunks: queue.Queue[bytes | _Failed] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: bytes | _Failed) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=_READ_AHEAD_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            while put(chunk := source.read(chunk_bytes)) and chunk:
                pass
        except BaseException as err:  # handed to the caller, raised there in order
            put(_Failed(err))

    reader = threading.Thread(target=produce, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = chunks.get()
            if isinstance(item, _Failed):
                raise item.error
            if not item:
                return
            yield item
    finally:
        stop.set()
        # Ended already in the normal case; after an early stop it leaves a blocked put within
        # _READ_AHEAD_POLL_S, and one stuck in a read is left behind (a daemon thread).
        reader.join(timeout=1)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def pump(source: Readable, sink: IO[bytes], drain: Callable[[], None]) -> None:
    """Copy ``source`` into a child's stdin (read ahead by a thread: ``read_ahead``), then call
    ``drain``. If the child stops reading early, ``source`` is still read to its end (and
    drained), so that a checksum computed on the way is still checked; the child's own exit
    status says why it stopped."""
    broken = False
    for chunk in read_ahead(source):
        if broken:
            continue
        try:
            sink.write(chunk)
        except BrokenPipeError:
            broken = True
    drain()
    with contextlib.suppress(BrokenPipeError, OSError):
        sink.close()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts: it exists). What
    a run left behind (a spool, a replay pause) is taken back only when its process is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
