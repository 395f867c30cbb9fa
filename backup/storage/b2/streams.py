"""Small adapters of the B2 backend: the upload's source counted (and its own exception kept,
so a dump that failed is told apart from a failed upload), a download's HTTP response read in
bounded pieces, and B2's millisecond timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backup.config import MIB
from backup.storage.base import Readable


class CountingReader:
    """Passes reads through, counting bytes and remembering the source's own exception."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.count = 0
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except BaseException as err:
            self.error = err
            raise
        self.count += len(data)
        return data


class ResponseReader:
    """``read(n)``/``close()`` over a streamed HTTP response (requests, or the simulator's)."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self._response.raw.read(MIB), b""))
        return self._response.raw.read(size)

    def close(self) -> None:
        self._response.close()


def from_millis(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, tz=UTC) if millis else None
