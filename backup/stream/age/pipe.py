"""The thread-and-pipe machinery that lets pyrage, which pulls from a reader, sit in a stream.

Owns ``Pipe`` (a bounded byte queue between two threads that either side can break to wake the
other), ``Recorder`` (remembers the first exception a file-like end raised, which pyrage would
turn into a string or drop), ``Outcome`` (a worker's first error and where it came from) and the
two worker functions ``encrypt_worker`` / ``decrypt_worker`` that run pyrage in a thread.
``encryption.py`` builds the public ``Encryptor`` / ``Decryptor`` on top of them.

Memory: a ``Pipe`` holds at most its ``limit_bytes`` (plus one write of any size when it has
room); the workers hold only pyrage's own buffers.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import pyrage


class PipeBroken(Exception):
    """The other end of a ``Pipe`` failed or was aborted."""


class Aborted(Exception):
    """The caller gave up on the stream."""


class Pipe:
    """A bounded byte queue between two threads; either side can break it to wake the other."""

    def __init__(self, limit_bytes: int) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[memoryview] = deque()
        self._size = 0
        self._limit = limit_bytes
        self._eof = False
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        if not data:
            return 0  # an empty read means end of stream to the reader: never queue one
        with self._cond:
            while self._size >= self._limit and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise PipeBroken from self.error
            self._chunks.append(memoryview(data))
            self._size += len(data)
            self._cond.notify_all()
        return len(data)

    def read(self, size: int) -> bytes:
        with self._cond:
            while not self._chunks and not self._eof and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise PipeBroken from self.error
            if not self._chunks:
                return b""
            head = self._chunks[0]
            piece = bytes(head[:size])
            if len(piece) == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[size:]
            self._size -= len(piece)
            self._cond.notify_all()
            return piece

    def flush(self) -> None:
        """Nothing to flush: ``write`` hands every byte over at once."""

    def finish(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def break_(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()


class Recorder:
    """Wraps a file-like end given to pyrage and remembers the first exception it raised.

    pyrage turns those exceptions into strings, or drops them in its final flush.
    """

    def __init__(self, target: object) -> None:
        self.target = target
        self.error: BaseException | None = None

    def read(self, size: int) -> bytes:
        try:
            data = self.target.read(size)  # type: ignore[attr-defined]
        except BaseException as err:
            self.error = self.error or err
            raise
        return bytes(data)

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        try:
            self.target.write(data)  # type: ignore[attr-defined]
        except BaseException as err:
            self.error = err
            raise
        return len(data)

    def flush(self) -> None:
        """Nothing: the sink is flushed and closed by ``Encryptor.close``."""


class Outcome:
    """How a worker ended: its first error and where it came from."""

    error: BaseException | None = None
    origin: str = ""  # "source", "sink" or "age"

    def record(self, error: BaseException, source: Recorder, sink: Recorder) -> BaseException:
        if source.error is not None:
            self.error, self.origin = source.error, "source"
        elif sink.error is not None:
            self.error, self.origin = sink.error, "sink"
        else:
            self.error, self.origin = error, "age"
        return self.error


def encrypt_worker(
    pipe: Pipe,
    output: Recorder,
    recipients: list[object],
    outcome: Outcome,
    finish: Callable[[], None] | None,
) -> None:
    # Module-level (not a method) so the thread holds no reference to the Encryptor: if the caller
    # drops it without close() or abort(), its finalizer breaks the pipe and this thread ends.
    source = Recorder(pipe)
    try:
        pyrage.encrypt_io(source, output, recipients)
        if output.error is not None:
            raise output.error
        if finish is not None:
            finish()
    except BaseException as err:
        pipe.break_(outcome.record(err, source, output))


def decrypt_worker(
    source: Recorder, pipe: Pipe, identities: list[object], outcome: Outcome
) -> None:
    output = Recorder(pipe)
    try:
        pyrage.decrypt_io(source, output, identities)
        if output.error is not None:
            raise output.error
        pipe.finish()
    except BaseException as err:
        pipe.break_(outcome.record(err, source, output))
