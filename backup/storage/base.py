"""The Storage protocol, what every backend guarantees, and the registry by URL scheme.

Every backend promises:

- ``put(key, stream)`` reads ``stream`` to its end and stores the bytes under ``key``; it returns
  the number of bytes stored. If ``stream.read`` raises, or the upload fails, ``put`` raises and
  leaves **no visible object** under ``key`` (local: ``*.partial`` then rename; S3: multipart
  upload aborted; B2: unfinished large file cancelled). Memory is bounded by the part size times
  the parts in flight; the whole stream is never held.
- ``open(key)`` returns a readable binary stream; a missing key raises ``ObjectNotFound``.
- ``list(prefix)`` returns every object whose key starts with ``prefix``, paging through all of
  them (never just the first 1,000).
- ``delete(keys)`` removes the objects for good (on B2: every file version, not a hide marker).
  A key that does not exist is not an error.

Keys are relative to the destination's own prefix (``b2://bucket/<prefix>``). Backends move
opaque bytes: they never compress, encrypt or parse. Retries of one request or one part live in
the backend; the whole stream is never retried.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable
from urllib.parse import urlsplit

from backup.errors import ConfigError

if TYPE_CHECKING:
    from backup.config import StorageConfig


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@runtime_checkable
class Storage(Protocol):
    url: str
    """The destination as the user wrote it, without credentials; used in logs and reports."""

    def put(self, key: str, stream: Readable) -> int: ...

    def open(self, key: str) -> BinaryIO: ...

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def delete(self, keys: Iterable[str]) -> None: ...


# scheme -> "module:Class"; imported lazily so a user without boto3 can still use B2.
BACKENDS: dict[str, str] = {
    "file": "backup.storage.local:LocalStorage",
    "s3": "backup.storage.s3:S3Storage",
    "b2": "backup.storage.b2:B2Storage",
}


@dataclass(frozen=True)
class Destination:
    """A parsed destination URL: ``scheme://bucket/prefix`` or ``file:///path``."""

    url: str
    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Destination:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in BACKENDS:
            raise ConfigError(
                f"BACKUP_DESTINATIONS: unsupported destination {url!r}",
                hint="use b2://bucket/prefix, s3://bucket/prefix or file:///path",
            )
        if scheme == "file":
            # file:///abs/path, file://./relative and file://relative are all accepted.
            path = (parts.netloc + parts.path) if parts.netloc else parts.path
            if not path:
                raise ConfigError(f"BACKUP_DESTINATIONS: {url!r} has no path")
            return cls(url=url.strip(), scheme=scheme, bucket="", prefix=path)
        if not parts.netloc:
            raise ConfigError(f"BACKUP_DESTINATIONS: {url!r} has no bucket name")
        if "@" in parts.netloc:
            raise ConfigError(
                "BACKUP_DESTINATIONS: credentials in a destination URL are not accepted",
                hint="put keys in B2_KEY_ID/B2_APPLICATION_KEY or AWS_ACCESS_KEY_ID/...",
            )
        return cls(
            url=url.strip(), scheme=scheme, bucket=parts.netloc, prefix=parts.path.strip("/")
        )


def open_storage(destination: Destination, config: StorageConfig) -> Storage:
    """Build the backend for ``destination``; imports its module only now."""
    module_name, _, class_name = BACKENDS[destination.scheme].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{destination.scheme}:// destinations need a library that is not installed: {err}",
            hint="install the project with 'pip install .' to get every backend",
        ) from err
    backend = getattr(module, class_name)
    return backend.from_destination(destination, config)


def join_key(prefix: str, key: str) -> str:
    """Join a destination prefix and a relative key with exactly one slash."""
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key
