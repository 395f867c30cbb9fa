"""The upload half of ``B2Storage.put``: a stream as one simple file, or as a large file whose
parts grow, so 10,000 parts hold more than a terabyte.

Owns reading the stream into parts, the parts in flight, ``b2_finish_large_file``, and stopping
every part's retries once the upload failed. ``storage.py`` cancels the unfinished large file a
failure leaves and translates the error.

Part sizes grow with the stream: parts 1 to ``parts_per_step`` are ``part_size_bytes``, the next
``parts_per_step`` twice that, then three times, ... (``part_size``). B2 takes at most 10,000
parts, each from 5 MB (but the last) to 5 GB, and they need not be equal. b2sdk's own streaming
upload (``Bucket.upload_unbound_stream``) has one part size for the whole file, so its largest
stream is 10,000 x the first part (78 GiB from 8 MiB); here, with ``PARTS_PER_STEP`` = 250, the
10,000 parts are 40 steps and hold ``part_size_bytes x 250 x 820`` (``capacity_bytes``): 1.0 TiB
from the smallest first part allowed (5 MiB), 1.6 TiB from the default 8 MiB.

Requests are b2sdk's: each part goes through its ``UploadManager.upload_part`` (the SHA-1 of the
part sent with it, a fresh upload URL and up to 5 attempts per part, back-off on 503/429 in its
HTTP layer), like the parts of its own streaming upload. A failure anywhere marks b2sdk's
``LargeFileUploadState`` failed, so no part starts another attempt.

Memory: at most ``parts_in_flight`` parts are held at once (the one being read from the stream
counts as one): a slot is taken before each read and released when that part's upload ends. A
part is read into an anonymous memory map of its size, sent from there (no copy) and unmapped
when b2sdk closes it, so its memory goes back to the system at once (a heap would keep the pages
of parts of growing sizes). So ``parts_in_flight x part_size(n)`` for the n-th part:
``parts_in_flight x part_size_bytes`` for a stream of up to ``parts_per_step`` parts (2 x 8 MiB
up to 1.95 GiB by default), 2 x 24 MiB at 10 GiB, 2 x 80 MiB at 100 GiB, 2 x 184 MiB at
500 GiB, 2 x 248 MiB at 1 TB.
"""

from __future__ import annotations

import functools
import hashlib
import io
import mmap
import threading
from concurrent.futures import Future
from typing import Any

from b2sdk.v2 import (
    B2Api,
    DoNothingProgressListener,
    EncryptionSetting,
    FileVersion,
    LargeFileUploadState,
    UploadSourceBytes,
)

from backup.config import MIB
from backup.errors import StorageError
from backup.storage import parts
from backup.storage.base import Readable
from backup.storage.parts import READ_SIZE

CONTENT_TYPE = "application/octet-stream"
# A large file has at most 10,000 parts of 5 MB to 5 GB, sizes free to differ:
# https://www.backblaze.com/docs/cloud-storage-create-large-files-with-the-native-api
B2_MAX_PARTS = 10_000
B2_MAX_PART_BYTES = 5 * 1000**3
# Every PARTS_PER_STEP parts, the part size grows by the first part's size: 250 is the largest
# step (but a round one) with which 10,000 parts from the smallest first part (5 MiB) hold 1 TB.
PARTS_PER_STEP = 250


# B2's growing parts (storage/parts.py): part_size(first, step, n), capacity_bytes(first, step, max)
part_size = functools.partial(parts.part_size, max_part_bytes=B2_MAX_PART_BYTES)
capacity_bytes = functools.partial(parts.capacity_bytes, max_part_bytes=B2_MAX_PART_BYTES)


class LargeFileUploader:
    """Uploads of streams into one bucket; see the module docstring."""

    def __init__(
        self,
        api: B2Api,
        bucket_id: str,
        url: str,
        part_size_bytes: int,
        parts_in_flight: int,
        encryption: EncryptionSetting | None = None,
        parts_per_step: int = PARTS_PER_STEP,
        max_parts: int = B2_MAX_PARTS,
    ) -> None:
        self.api = api
        self.bucket_id = bucket_id
        self.url = url
        self.part_size_bytes = part_size_bytes
        self.parts_in_flight = max(2, parts_in_flight)  # one part reading, one uploading
        self.encryption = encryption
        self.parts_per_step = max(1, parts_per_step)
        self.max_parts = max_parts

    def part_size(self, number: int) -> int:
        return part_size(self.part_size_bytes, self.parts_per_step, number)

    def upload(self, key: str, name: str, stream: Readable) -> FileVersion:
        """Store ``stream`` as ``name``: one ``b2_upload_file`` when it fits in one part, else
        a large file. The stream's own exceptions pass unchanged; on any failure the large file
        stays unfinished (invisible) for the caller to cancel."""
        slots = _Slots(self.parts_in_flight)
        slots.take(stream)
        first = read_part(stream, self.part_size(1))
        if len(first) < self.part_size(1):
            return self._upload_small(name, first)
        slots.take(stream)
        second = read_part(stream, self.part_size(2))
        if not second:
            return self._upload_small(name, first)
        services = self.api.services
        file_id = services.large_file.start_large_file(
            self.bucket_id, name, CONTENT_TYPE, {}, encryption=self.encryption
        ).file_id
        state = LargeFileUploadState(DoNothingProgressListener())
        futures: list[Future[dict[str, Any]]] = []
        try:
            futures.append(self._submit(file_id, 1, first, state, slots))
            futures.append(self._submit(file_id, 2, second, state, slots))
            del first, second  # the part uploads hold the only references now
            number = 3
            while True:
                slots.take(stream)
                data = read_part(stream, self.part_size(number))
                if not data:
                    slots.give_back()
                    break
                if number > self.max_parts:
                    raise self._too_many_parts(key)
                futures.append(self._submit(file_id, number, data, state, slots))
                del data
                number += 1
            sha1s = [future.result()["contentSha1"] for future in futures]
            response = self.api.session.finish_large_file(file_id, sha1s)
        except BaseException:
            # No part starts another attempt; parts not started yet never start.
            state.set_error("the upload was stopped")
            for future in futures:
                future.cancel()
            raise
        return self.api.file_version_factory.from_api_response(response)

    def _too_many_parts(self, key: str) -> StorageError:
        capacity = capacity_bytes(self.part_size_bytes, self.parts_per_step, self.max_parts)
        return StorageError(
            f"{self.url}: {key} needs more than {self.max_parts} parts (the first "
            f"{self.part_size_bytes // MIB} MiB, growing every {self.parts_per_step}): "
            f"more than {capacity} bytes",
            hint="raise BACKUP_PART_SIZE_MB",
        )

    def _upload_small(self, name: str, data: bytes) -> FileVersion:
        source = _source(data)
        future = self.api.services.upload_manager.upload_file(
            self.bucket_id,
            source,
            name,
            CONTENT_TYPE,
            {},
            DoNothingProgressListener(),
            encryption=self.encryption,
        )
        return future.result()

    def _submit(
        self,
        file_id: str,
        number: int,
        data: bytes,
        state: LargeFileUploadState,
        slots: _Slots,
    ) -> Future[dict[str, Any]]:
        source = _source(data)
        future: Future[dict[str, Any]] = self.api.services.upload_manager.upload_part(
            self.bucket_id, file_id, source, number, state, encryption=self.encryption
        )

        def done(future: Future[dict[str, Any]]) -> None:
            # b2sdk's worker still holds the source until its next task: drop the bytes now,
            # so the slot given back is memory given back (b2sdk closed its stream over them).
            source.data_bytes = b""
            slots.part_done(future)

        future.add_done_callback(done)
        return future


class _Slots:
    """The part buffers of one upload: taken before a part is read, given back when its upload
    ends. The first part that fails is remembered and raised by the reader at its next take."""

    def __init__(self, count: int) -> None:
        self._free = threading.Semaphore(count)
        self._failed: Future[Any] | None = None

    def take(self, stream: Readable) -> None:
        """Wait for a free buffer; meanwhile ``read(0)`` raises at once when the dump was
        aborted, so the upload stops now instead of after the parts' retries."""
        parts.take_slot(self._free, stream, self._raise_failure)

    def give_back(self) -> None:
        self._free.release()

    def part_done(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None and self._failed is None:
            self._failed = future
        self._free.release()

    def _raise_failure(self) -> None:
        if self._failed is not None:
            self._failed.result()


def _source(data: bytes | mmap.mmap) -> UploadSourceBytes:
    """``data`` with its SHA-1, which B2 checks on arrival (an integrity check, as b2sdk's own
    streaming upload computes it before sending)."""
    sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    if isinstance(data, mmap.mmap):
        return _MappedSource(data, content_sha1=sha1)
    return UploadSourceBytes(data, content_sha1=sha1)


class _MappedSource(UploadSourceBytes):
    """A part in an anonymous memory map, sent as is (no copy) and unmapped, so its memory
    goes back to the system, when b2sdk closes the stream after the part's last attempt."""

    def open(self) -> _MappedReader:
        return _MappedReader(self.data_bytes)


class _MappedReader(io.RawIOBase):
    def __init__(self, mapped: mmap.mmap) -> None:
        super().__init__()
        self._map = mapped
        mapped.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._map.read(None if size is None or size < 0 else size)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        self._map.seek(pos, whence)
        return self._map.tell()

    def tell(self) -> int:
        return self._map.tell()

    def close(self) -> None:
        if not self.closed:
            self._map.close()
        super().close()


def read_part(stream: Readable, size: int) -> bytes | mmap.mmap:
    """Read until ``size`` bytes or the end of the stream; the stream's errors pass unchanged.

    The part lives in an anonymous memory map of its full size: one allocation, outside the
    heap, so its memory goes back to the system when the part is sent (a heap would keep the
    pages of parts of varying sizes). An empty stream gives ``b""``."""
    mapped = mmap.mmap(-1, size)
    filled = 0
    try:
        while filled < size:
            chunk = stream.read(min(READ_SIZE, size - filled))
            if not chunk:
                break
            filled += mapped.write(chunk)
    except BaseException:
        mapped.close()  # now, not when the traceback that holds this frame is gone
        raise
    if filled == 0:
        mapped.close()
        return b""
    if filled < size:
        mapped.resize(filled)
    return mapped
