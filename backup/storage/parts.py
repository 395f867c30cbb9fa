"""What every backend that uploads a stream in parts shares (S3 multipart, B2 large files, GCS
resumable chunks, Azure staged blocks): the size of part ``n``, what ``max_parts`` parts hold,
reading one part, and waiting for a free part buffer while still hearing an abort.

Parts grow: every ``parts_per_step`` parts, the part size grows by the first part's size
(capped at the service's largest part), so a stream of unknown length fits the service's part
count limit while memory stays ``parts_in_flight x part_size(n)``. A backend with fixed parts
(GCS chunks, Azure blocks) uses a step larger than its part count."""

from __future__ import annotations

import threading
from collections.abc import Callable

from backup.config import MIB
from backup.storage.base import Readable

# Size of one read() on the source stream while a part fills.
READ_SIZE = 1 * MIB
# How often a reader waiting for a free part buffer checks that its stream was not aborted.
SLOT_POLL_S = 0.5


def part_size(first_bytes: int, parts_per_step: int, number: int, max_part_bytes: int) -> int:
    """Part ``number`` (1-based) of an upload whose parts grow by ``first_bytes`` every
    ``parts_per_step`` parts, never above ``max_part_bytes``; the last part may be shorter."""
    return min(max_part_bytes, first_bytes * (1 + (number - 1) // parts_per_step))


def capacity_bytes(
    first_bytes: int, parts_per_step: int, max_parts: int, max_part_bytes: int
) -> int:
    """The largest stream ``max_parts`` growing parts hold."""
    return sum(
        part_size(first_bytes, parts_per_step, n, max_part_bytes) for n in range(1, max_parts + 1)
    )


def read_part(stream: Readable, size: int) -> bytearray:
    """Read until ``size`` bytes or the end of the stream; the stream's errors pass unchanged."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(READ_SIZE, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def take_slot(
    slots: threading.Semaphore,
    stream: Readable,
    raise_failure: Callable[[], None],
    poll_s: float | None = None,
) -> None:
    """Take a part buffer; while every one is busy (parts being sent or retried), keep asking
    the stream: ``read(0)`` raises at once when the dump was aborted, so the upload stops now
    instead of after the parts' retries; a part that failed meanwhile is raised
    (``raise_failure``) before and after the wait."""
    while not slots.acquire(timeout=SLOT_POLL_S if poll_s is None else poll_s):
        stream.read(0)
        raise_failure()
    raise_failure()
