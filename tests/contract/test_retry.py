"""retry.py: bounded per-request retries, and download streams that resume mid-body."""

from __future__ import annotations

import io
import threading
import time

import pytest

from backup.config import RetryConfig
from backup.errors import StorageError
from backup.storage.retry import ResumingReader, retrying

FAST = RetryConfig(attempts=4, max_seconds=10.0, initial_backoff_s=0.001)


class Permanent(Exception):
    pass


class Transient(Exception):
    pass


def is_permanent(err: BaseException) -> bool:
    return isinstance(err, Permanent)


class Flaky:
    """Raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_transient_errors_are_retried_until_success() -> None:
    call = Flaky(Transient(), Transient())
    assert retrying(FAST, is_permanent)(call) == "ok"
    assert call.calls == 3


def test_permanent_error_stops_at_once_unchanged() -> None:
    error = Permanent("bad key")
    call = Flaky(error)
    with pytest.raises(Permanent) as raised:
        retrying(FAST, is_permanent)(call)
    assert raised.value is error
    assert call.calls == 1


def test_attempts_bound_the_retries() -> None:
    call = Flaky(*(Transient(str(i)) for i in range(10)))
    with pytest.raises(Transient, match="3"):
        retrying(FAST, is_permanent)(call)
    assert call.calls == FAST.attempts


def test_max_seconds_bounds_the_retries() -> None:
    config = RetryConfig(attempts=1000, max_seconds=0.3, initial_backoff_s=0.05)
    call = Flaky(*(Transient() for _ in range(1000)))
    started = time.monotonic()
    with pytest.raises(Transient):
        retrying(config, is_permanent)(call)
    assert time.monotonic() - started < 2.0
    assert 2 <= call.calls < 100


def test_interrupts_are_never_retried() -> None:
    call = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retrying(FAST, is_permanent)(call)
    assert call.calls == 1


def test_stop_event_ends_the_retries() -> None:
    stop = threading.Event()

    def fails_and_stops() -> None:
        stop.set()  # as when a sibling part has failed
        raise Transient()

    with pytest.raises(Transient):
        retrying(FAST, is_permanent, stop_event=stop)(fails_and_stops)


class BreakingReader:
    """Reads ``data[offset:]``; after ``give`` bytes raises ``error``, or ends early if None."""

    def __init__(self, data: bytes, offset: int, give: int | None, error: Exception | None) -> None:
        self.body = io.BytesIO(data[offset:])
        self.left = give
        self.error = error
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        if self.left is not None and self.left <= 0:
            if self.error is not None:
                raise self.error
            return b""  # the connection ended early without an error
        if self.left is not None:
            size = self.left if size < 0 else min(size, self.left)
        chunk = self.body.read(size)
        if self.left is not None:
            self.left -= len(chunk)
        return chunk

    def close(self) -> None:
        self.closed = True


def translate(err: Exception) -> StorageError:
    return StorageError(f"download failed: {type(err).__name__}", hint="check the network")


def reader_over(
    data: bytes, breaks: list[tuple[int, Exception | None]]
) -> tuple[ResumingReader, list[int]]:
    """A ResumingReader whose successive connections break as ``breaks`` says."""
    opened: list[int] = []
    plan = list(breaks)

    def open_at(offset: int) -> BreakingReader:
        opened.append(offset)
        give, error = plan.pop(0) if plan else (None, None)
        return BreakingReader(data, offset, give, error)

    first = open_at(0)
    return ResumingReader(first, open_at, len(data), FAST, is_permanent, translate), opened


def test_reader_resumes_at_the_offset_after_breaks() -> None:
    data = bytes(range(256)) * 100
    reader, opened = reader_over(data, [(1000, Transient()), (3000, None), (5, Transient())])
    got = b"".join(iter(lambda: reader.read(777), b""))
    assert got == data
    assert opened == [0, 1000, 4000, 4005]


def test_reader_read_all() -> None:
    data = b"x" * 5000
    reader, _ = reader_over(data, [(100, Transient())])
    assert reader.read() == data
    assert reader.read() == b""


def test_reader_permanent_error_is_translated() -> None:
    reader, _ = reader_over(b"y" * 100, [(10, Permanent("denied"))])
    assert reader.read(10) == b"y" * 10
    with pytest.raises(StorageError, match="Permanent"):
        reader.read(10)


def test_reader_gives_up_after_attempts_without_progress() -> None:
    reader, opened = reader_over(b"z" * 100, [(0, Transient())] * 10)
    with pytest.raises(StorageError, match="Transient"):
        reader.read(10)
    assert len(opened) == FAST.attempts


def test_reader_close() -> None:
    reader, _ = reader_over(b"abc", [])
    with reader:
        assert reader.read(1) == b"a"
    with pytest.raises(ValueError):
        reader.read(1)
