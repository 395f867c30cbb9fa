"""The Storage protocol: what every backend guarantees, and the key rules they share.

Every backend promises:

- ``put(key, stream)`` reads ``stream`` to its end and stores the bytes under ``key``; it returns
  the number of bytes stored. If ``stream.read`` raises, or the upload fails, ``put`` raises and
  leaves **no visible object** under ``key`` (local: ``*.partial`` then rename; S3: multipart
  upload aborted; B2: unfinished large file cancelled; GCS: resumable session cancelled;
  Azure: block list never committed, staged blocks discarded). Memory is bounded by the part
  size times the parts in flight; the whole stream is never held.
- ``open(key)`` returns a readable binary stream; a missing key raises ``ObjectNotFound``.
- ``open_range(key, offset, length)`` returns a readable stream of the ``length`` bytes of
  ``key`` from byte ``offset`` (one ranged request: a file inside a directory-format pack is
  read alone); a missing key raises ``ObjectNotFound``; a range past the object's end yields
  only the bytes it has (the reader's size check sees the difference). ``length`` 0 reads nothing.
- ``list(prefix)`` returns every object whose key starts with ``prefix``, paging through all of
  them (never just the first 1,000). Each ``ObjectInfo`` carries a ``fingerprint``: a value the
  store changes whenever the object is written again (S3's ETag, B2's file id, GCS's
  generation, Azure's ETag, a local file's inode, mtime and ctime), so a reader can tell
  "still the object that was stored" from "the same name, other bytes" without reading it.
- ``delete(keys)`` removes the objects for good (on B2: every file version, not a hide marker).
  A key that does not exist is not an error.

- ``cleanup_incomplete(prefix, older_than_s)`` removes what a crashed run's ``put`` left behind
  (a ``.partial`` file, an unfinished multipart upload or large file, staged Azure blocks; a
  GCS resumable session cannot be found by anyone and expires by itself) under ``prefix`` and
  started at least ``older_than_s`` seconds ago, logs each one it removes, and returns how many.
  It cannot tell a crashed run's upload from a live one (another copy of the job, on another
  machine, may be uploading right now), so the job passes an age longer than any run may last
  (``Config.orphan_min_age_s``): only an upload no live run can own is removed.
- ``from_destination(destination, config)`` builds the backend without touching the network.

Keys are relative to the destination's own prefix (``b2://bucket/<prefix>``), never empty, never
absolute and never contain ``..`` (``check_key``). Backends move opaque bytes: they never
compress, encrypt or parse. Retries of one request or one part live in the backend; the whole
stream is never retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from backup.errors import StorageError

if TYPE_CHECKING:
    from backup.config import Destination, StorageConfig


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None
    fingerprint: str | None = None
    """Changes whenever the object is written again (see the module); ``None``: unknown."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@runtime_checkable
class Storage(Protocol):
    url: str
    """The destination as the user wrote it, without credentials; used in logs and reports."""

    def put(self, key: str, stream: Readable) -> int: ...

    def open(self, key: str) -> BinaryIO: ...

    def open_range(self, key: str, offset: int, length: int) -> BinaryIO: ...

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def cleanup_incomplete(self, prefix: str = "", older_than_s: float = 0.0) -> int: ...

    @classmethod
    def from_destination(cls, destination: Destination, config: StorageConfig) -> Storage: ...


def age_s(started: datetime | None, now: datetime | None = None) -> float:
    """Seconds since ``started`` (aware). An unknown start counts as just now: an upload whose
    age cannot be told may be a live one, and is left to the store's lifecycle rules."""
    if started is None:
        return 0.0
    return ((now or datetime.now(UTC)) - started).total_seconds()


def join_key(prefix: str, key: str) -> str:
    """Join a destination prefix and a relative key with exactly one slash."""
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key


class EmptyReader:
    """What ``open_range`` of 0 bytes returns: no request is made."""

    def read(self, size: int = -1, /) -> bytes:
        return b""

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def __enter__(self) -> EmptyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class LimitedReader:
    """At most ``length`` bytes of ``source`` (a file already at its offset)."""

    def __init__(self, source: BinaryIO, length: int) -> None:
        self.source = source
        self.left = length

    def read(self, size: int = -1, /) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if size is None or size < 0 else min(size, self.left)
        data = self.source.read(want)
        self.left -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> LimitedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_key(url: str, key: str) -> str:
    """``key`` if it is a valid relative key; a ``StorageError`` naming ``url`` otherwise."""
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise StorageError(f"{url}: invalid object key {key!r}")
    return key
