"""A local directory (or a mounted volume) as a destination.

``put`` writes ``<key>.partial``, fsyncs it, renames it into place and fsyncs the directory, so
a crash or a failed stream never leaves a file under the final name. ``list`` ignores
``*.partial`` files; ``cleanup_incomplete`` removes ones left by a crashed run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from backup.errors import ObjectNotFound, StorageError
from backup.storage.base import EmptyReader, LimitedReader, ObjectInfo, Readable, age_s, check_key

if TYPE_CHECKING:
    from backup.config import Destination, StorageConfig

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
CHUNK_BYTES = 1024 * 1024
# The container image's user (Dockerfile: useradd --uid 10001): a folder mounted from the host
# must be writable by it.
IMAGE_UID = 10001


class LocalStorage:
    def __init__(self, root: str | Path, url: str | None = None) -> None:
        self.root = Path(root)
        self.url = url or f"file://{self.root}"

    @classmethod
    def from_destination(cls, destination: Destination, config: StorageConfig) -> LocalStorage:
        return cls(destination.prefix, destination.url)

    def _hint(self, err: OSError, needed: str) -> str | None:
        """What to do about a folder this process may not use: name it, and say whom the
        container image runs as (a host folder mounted with -v belongs to someone else)."""
        if not isinstance(err, PermissionError):
            return None
        path = Path(err.filename) if err.filename else self.root
        if needed == "writable" and path != self.root:
            path = path.parent  # a file is created or removed by writing to its folder
        return (
            f"{path} is not {needed} by uid {os.getuid()}. The container image runs as uid "
            f"{IMAGE_UID}: on the host, chown -R {IMAGE_UID}:{IMAGE_UID} the folder mounted at "
            f"{self.root}, or run the container with --user set to that folder's owner"
        )

    def _path(self, key: str) -> Path:
        return self.root / check_key(self.url, key)

    def put(self, key: str, stream: Readable) -> int:
        path = self._path(key)
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            size = 0
            with open(partial, "wb") as out:
                while chunk := stream.read(CHUNK_BYTES):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
            _fsync_dir(path.parent)
        except BaseException as err:
            with contextlib.suppress(OSError):
                partial.unlink()
            if isinstance(err, OSError):
                raise StorageError(
                    f"{self.url}: cannot write {key}: {err.strerror or err}",
                    hint=self._hint(err, "writable")
                    or "check that the directory exists, is writable and has free space",
                ) from err
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except FileNotFoundError as err:
            raise ObjectNotFound(f"{self.url}: no object {key}") from err
        except OSError as err:
            raise StorageError(
                f"{self.url}: cannot read {key}: {err.strerror}", hint=self._hint(err, "readable")
            ) from err

    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        source = self.open(key)
        if length <= 0:
            source.close()
            return cast(BinaryIO, EmptyReader())
        source.seek(offset)
        return cast(BinaryIO, LimitedReader(source, length))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.exists():
            return []
        objects = []
        try:
            for dirpath, _dirnames, filenames in os.walk(self.root):
                for name in filenames:
                    if name.endswith(PARTIAL_SUFFIX):
                        continue
                    full = Path(dirpath) / name
                    key = full.relative_to(self.root).as_posix()
                    if not key.startswith(prefix):
                        continue
                    stat = full.stat()
                    modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
                    # ctime too: any write, even one that puts the mtime back, changes it.
                    fingerprint = f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"
                    objects.append(
                        ObjectInfo(key, stat.st_size, modified=modified, fingerprint=fingerprint)
                    )
        except OSError as err:
            raise StorageError(
                f"{self.url}: cannot list: {err.strerror}", hint=self._hint(err, "readable")
            ) from err
        return sorted(objects, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._path(key).unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                raise StorageError(
                    f"{self.url}: cannot delete {key}: {err.strerror}",
                    hint=self._hint(err, "writable"),
                ) from err

    def cleanup_incomplete(self, prefix: str = "", older_than_s: float = 0.0) -> int:
        """Remove ``*.partial`` files under ``prefix`` last written ``older_than_s`` seconds ago
        or more (a live upload writes its file all the time); returns how many."""
        if not self.root.exists():
            return 0
        removed = 0
        now = datetime.now(UTC)
        for partial in self.root.rglob(f"*{PARTIAL_SUFFIX}"):
            key = partial.relative_to(self.root).as_posix()
            if not key.startswith(prefix):
                continue
            with contextlib.suppress(OSError):
                modified = datetime.fromtimestamp(partial.stat().st_mtime, tz=UTC)
                if age_s(modified, now) < older_than_s:
                    continue
                partial.unlink()
                removed += 1
                logger.info(
                    "%s: removed the unfinished upload %s (last written %s)",
                    self.url,
                    key,
                    modified.isoformat(timespec="seconds"),
                    extra={"stage": "cleanup", "destination": self.url},
                )
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
