"""Retries of one request or one part, and a download stream that resumes where it broke.

Backends wrap each request (one ``upload_part``, one ``list`` page, one ``delete`` batch) in
``retrying(config, is_permanent)``: exponential backoff with jitter, bounded by
``BACKUP_RETRY_ATTEMPTS`` and ``BACKUP_RETRY_MAX_SECONDS``, stopping at once on an error that
``is_permanent`` recognises (bad credentials, missing bucket). A retried request must be
resendable as it is: a part is held in memory until it is confirmed, so it is. Nothing here ever
retries a whole upload stream, which cannot be rewound.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import tenacity

from backup.config import RetryConfig

logger = logging.getLogger(__name__)

# A single wait never exceeds this, whatever the attempt number: beyond it, waiting longer only
# delays the failure report.
MAX_BACKOFF_S = 30.0
# read() with no size is served in chunks of this many bytes, so each can resume on its own.
READ_ALL_CHUNK_BYTES = 1024 * 1024


def retrying(
    config: RetryConfig,
    is_permanent: Callable[[BaseException], bool],
    *,
    what: str = "request",
    stop_event: threading.Event | None = None,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` to call one request with: ``retrying(cfg, perm)(fn, *args)``.

    Retries every ``Exception`` that ``is_permanent`` rejects, at most ``config.attempts`` times
    in all, and never starts an attempt after ``config.max_seconds`` have passed since the first.
    ``BaseException`` (KeyboardInterrupt, SystemExit) is never retried. When ``stop_event`` is
    set, no further attempt starts and a wait between attempts ends at once with
    ``RetryStopped`` (used to stop sibling parts once one part has failed, or the upload was
    aborted: a stopped upload must not sleep through its backoff). Otherwise the last error is
    re-raised unchanged.
    """

    def should_retry(err: BaseException) -> bool:
        return isinstance(err, Exception) and not is_permanent(err)

    stop = tenacity.stop_after_attempt(max(1, config.attempts)) | tenacity.stop_before_delay(
        config.max_seconds
    )
    sleep: Callable[[float], None] = tenacity.nap.sleep
    if stop_event is not None:
        stop = stop | tenacity.stop_when_event_set(stop_event)
        sleep = _interruptible_sleep(stop_event)
    return tenacity.Retrying(
        sleep=sleep,
        retry=tenacity.retry_if_exception(should_retry),
        stop=stop,
        wait=tenacity.wait_exponential_jitter(
            multiplier=config.initial_backoff_s,
            max=MAX_BACKOFF_S,
            jitter=config.initial_backoff_s,
        ),
        before_sleep=_log_retry(what),
        reraise=True,
    )


DELETES_IN_FLIGHT = 8
"""Deletes sent at once by the stores that delete one object per request (GCS, Azure): each is
one small request, so a prune of thousands of objects is bound by round trips, not bandwidth."""


def delete_each(keys: Iterable[str], delete_one: Callable[[str], object]) -> None:
    """``delete_one(key)`` for every key, ``DELETES_IN_FLIGHT`` at once (each retried on its
    own by the caller's ``delete_one``); the first failure is raised once all have run."""
    unique = list(dict.fromkeys(keys))
    if not unique:
        return
    with ThreadPoolExecutor(min(DELETES_IN_FLIGHT, len(unique))) as pool:
        done = [pool.submit(delete_one, key) for key in unique]
        for future in done:
            future.result()


Item = TypeVar("Item")
Result = TypeVar("Result")

# Listings and small reads (one folder's listing, one manifest) sent at once by ``each``: the
# serial start and end of a run over many databases are round trips, not work.
REQUESTS_IN_FLIGHT = 8


def each(
    items: Iterable[Item], work: Callable[[Item], Result], in_flight: int = REQUESTS_IN_FLIGHT
) -> list[Result]:
    """``work(item)`` for every item, ``in_flight`` at once; the results in the items' order.
    The first failure (in the items' order) is raised once the running ones have ended, and
    no item is started after it; with one item it runs in the calling thread."""
    todo = list(items)
    if len(todo) <= 1 or in_flight <= 1:
        return [work(item) for item in todo]
    pool = ThreadPoolExecutor(min(in_flight, len(todo)))
    try:
        futures = [pool.submit(work, item) for item in todo]
        return [future.result() for future in futures]
    finally:
        # On a failure (or Interrupted in this thread) nothing more starts; the running end.
        pool.shutdown(wait=True, cancel_futures=True)


class RetryStopped(Exception):
    """A wait between attempts was cut short: the work was stopped (see ``retrying``)."""


def _interruptible_sleep(event: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if event.wait(seconds):
            raise RetryStopped("stopped while waiting to retry")

    return sleep


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def log(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s failed (attempt %d), retrying in %.1f s: %s",
            what,
            state.attempt_number,
            state.upcoming_sleep,
            type(err).__name__ if err else "?",
        )

    return log


class ClosableReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class ResumingReader:
    """A read-only download stream that reopens at the current offset when a read breaks.

    ``open_at(offset)`` returns a fresh reader starting at byte ``offset`` (a ranged GET). When a
    read raises a transient error (one ``is_permanent`` returns False for), the stream is reopened
    at the current offset, the reopen itself retried by ``retrying``; bytes already returned are
    never returned twice. It gives up after ``config.attempts`` failures in a row without progress.
    """

    def __init__(
        self,
        first: ClosableReader,
        open_at: Callable[[int], ClosableReader],
        size: int | None,
        config: RetryConfig,
        is_permanent: Callable[[BaseException], bool],
        translate: Callable[[Exception], Exception],
        what: str = "download",
    ) -> None:
        self._reader: ClosableReader | None = first
        self._open_at = open_at
        self._size = size
        self._config = config
        self._is_permanent = is_permanent
        self._translate = translate
        self._what = what
        self._offset = 0
        self._failures = 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end. Errors after retries go through
        ``translate`` (the backend's ``StorageError``), raised from the original."""
        if self.closed:
            raise ValueError("read of a closed stream")
        try:
            if size is None or size < 0:
                return b"".join(iter(lambda: self._read(READ_ALL_CHUNK_BYTES), b""))
            return self._read(size)
        except Exception as err:
            raise self._translate(err) from err

    def _read(self, size: int) -> bytes:
        while True:
            if self._reader is None:
                self._reader = retrying(self._config, self._is_permanent, what=self._what)(
                    self._open_at, self._offset
                )
            try:
                data = self._reader.read(size)
            except Exception as err:
                self._failures += 1
                if self._is_permanent(err) or self._failures >= max(1, self._config.attempts):
                    raise
                logger.warning(
                    "%s broke at byte %d, resuming: %s",
                    self._what,
                    self._offset,
                    type(err).__name__,
                )
                self._drop_reader()
                continue
            if data:
                self._failures = 0
            elif self._size is not None and self._offset < self._size:
                # The connection ended early without an error: resume like a broken read.
                self._failures += 1
                if self._failures >= max(1, self._config.attempts):
                    raise ConnectionError(
                        f"{self._what} ended at byte {self._offset} of {self._size}"
                    )
                self._drop_reader()
                continue
            self._offset += len(data)
            return data

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            # The connection is being discarded; an error closing it changes nothing.
            with contextlib.suppress(Exception):
                reader.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._drop_reader()

    def __enter__(self) -> ResumingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
