"""The multipart half of ``S3Storage.put``: a stream longer than one part, uploaded part by part.

Owns the reading loop, the part uploaders running in parallel, ``CompleteMultipartUpload`` and
the abort that follows any failure, so an unfinished upload never becomes an object. Requests go
through the storage's ``BucketClient`` (``client.py``).

Part sizes grow with the stream: parts 1 to ``parts_per_step`` are ``part_size_bytes``, the next
``parts_per_step`` twice that, then three times, ... (``part_size``). S3 takes at most 10,000
parts per upload, all but the last at least 5 MiB, sizes free to differ; so a small first part
keeps the memory of most backups small while 10,000 parts still hold a few hundred GB
(``capacity_bytes``: 8 MiB growing every 1,000 parts is 430 GiB).

Memory: at most ``parts_in_flight`` parts are held at once (the one being read from the stream
counts as one): a semaphore slot is taken before each read and released when that part's upload
ends, and no other reference to a part outlives its upload (the first part is handed over, not
kept by the caller). So ``parts_in_flight x part_size(n)`` for the n-th part: ``parts_in_flight x
part_size_bytes`` for a stream of up to ``parts_per_step`` parts, whatever its size below that.
"""

from __future__ import annotations

import functools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from backup.config import MIB
from backup.errors import StorageError
from backup.storage import parts
from backup.storage.base import Readable
from backup.storage.parts import read_part
from backup.storage.retry import retrying
from backup.storage.s3.client import BucketClient
from backup.storage.s3.errors import error_code, is_permanent

logger = logging.getLogger(__name__)

# Every PARTS_PER_STEP parts, the part size grows by the first part's size (see the docstring).
PARTS_PER_STEP = 1000
# S3's largest part: https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
MAX_PART_BYTES = 5 * 1024 * MIB
CONTENT_TYPE = "application/octet-stream"


class MultipartUploader:
    """Multipart uploads (and their aborts) into one bucket; see the module docstring."""

    def __init__(
        self,
        bucket: BucketClient,
        part_size_bytes: int,
        parts_in_flight: int,
        sse: dict[str, str] | None = None,
        parts_per_step: int = PARTS_PER_STEP,
    ) -> None:
        self.bucket = bucket
        self.part_size_bytes = part_size_bytes
        self.parts_in_flight = max(1, parts_in_flight)
        self.sse = sse or {}
        self.parts_per_step = max(1, parts_per_step)

    def part_size(self, number: int) -> int:
        """The size of part ``number`` (1-based); the last part may be shorter."""
        return part_size(self.part_size_bytes, self.parts_per_step, number)

    def put(
        self, key: str, name: str, handed: list[bytearray], stream: Readable, max_parts: int
    ) -> int:
        """Upload the first part (popped from ``handed``, so the caller keeps no reference to
        it) then the rest of ``stream`` as parts of one upload to ``name``."""
        b = self.bucket
        created = b.call(
            "upload",
            key,
            b.client.create_multipart_upload,
            Bucket=b.bucket,
            Key=name,
            ContentType=CONTENT_TYPE,
            **self.sse,
        )
        upload_id: str = created["UploadId"]
        state = _UploadState(self.parts_in_flight)
        executor = ThreadPoolExecutor(self.parts_in_flight, thread_name_prefix="s3-part")
        futures: list[Future[None]] = []
        size = 0
        try:
            data = handed.pop()
            state.slots.acquire()  # the slot of the part already read
            part_number = 1
            while data:
                if part_number > max_parts:
                    raise StorageError(
                        f"{b.url}: {key} needs more than {max_parts} parts (the first "
                        f"{self.part_size_bytes // MIB} MiB, growing every "
                        f"{self.parts_per_step}): more than "
                        f"{capacity_bytes(self.part_size_bytes, self.parts_per_step, max_parts)} "
                        "bytes",
                        hint="raise BACKUP_PART_SIZE_MB",
                    )
                futures.append(
                    executor.submit(
                        self._upload_part, key, name, upload_id, part_number, data, state
                    )
                )
                size += len(data)
                part_number += 1
                del data  # the worker holds the only reference now: memory stays bounded
                # a free part buffer before reading the next
                parts.take_slot(state.slots, stream, state.raise_failure)
                data = read_part(stream, self.part_size(part_number))
            state.slots.release()
            for future in futures:
                future.result()
            state.raise_failure()
            self._complete(key, name, upload_id, state.etags, size)
        except BaseException:
            state.stop.set()
            executor.shutdown(wait=True, cancel_futures=True)
            self.abort(name, upload_id)
            raise  # the stream's own exception unchanged, or a StorageError from a part
        finally:
            executor.shutdown(wait=True)
        return size

    def _upload_part(
        self, key: str, name: str, upload_id: str, number: int, data: bytearray, state: _UploadState
    ) -> None:
        try:
            if state.stop.is_set():
                return
            b = self.bucket
            response = retrying(
                b.retry,
                is_permanent,
                what=f"upload of {key} part {number}",
                stop_event=state.stop,
            )(
                b.client.upload_part,
                Bucket=b.bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            state.etags[number] = response["ETag"]
        except Exception as err:
            state.fail(self.bucket.error(err, "upload", key))
        finally:
            state.slots.release()

    def _complete(
        self, key: str, name: str, upload_id: str, etags: dict[int, str], size: int
    ) -> None:
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        b = self.bucket
        try:
            b.call(
                "upload",
                key,
                b.client.complete_multipart_upload,
                Bucket=b.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except StorageError as err:
            # A retried Complete whose first attempt succeeded unseen answers NoSuchUpload;
            # the object is there if its size matches.
            if error_code(err.__cause__) != "NoSuchUpload" or self._size_of(name) != size:
                raise

    def abort(self, name: str, upload_id: str) -> None:
        """Abort a multipart upload; never raises (the original failure matters more)."""
        b = self.bucket
        try:
            retrying(b.retry, is_permanent, what="abort of an unfinished upload")(
                b.client.abort_multipart_upload,
                Bucket=b.bucket,
                Key=name,
                UploadId=upload_id,
            )
        except Exception as err:
            if error_code(err) == "NoSuchUpload":
                return
            logger.warning(
                "%s: could not abort the unfinished upload of %s (%s); "
                "cleanup_incomplete() or a lifecycle rule removes it",
                b.url,
                name,
                error_code(err) or type(err).__name__,
            )

    def _size_of(self, name: str) -> int | None:
        try:
            head = self.bucket.client.head_object(Bucket=self.bucket.bucket, Key=name)
            return int(head["ContentLength"])
        except Exception:
            return None


class _UploadState:
    """Shared between the reading thread and the part uploaders of one multipart upload."""

    def __init__(self, parts_in_flight: int) -> None:
        self.slots = threading.Semaphore(parts_in_flight)
        self.stop = threading.Event()
        self.etags: dict[int, str] = {}
        self._failure: StorageError | None = None
        self._lock = threading.Lock()

    def fail(self, err: StorageError) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = err
        self.stop.set()

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure


# S3's growing parts (storage/parts.py): part_size(first, step, n), capacity_bytes(first, step, max)
part_size = functools.partial(parts.part_size, max_part_bytes=MAX_PART_BYTES)
capacity_bytes = functools.partial(parts.capacity_bytes, max_part_bytes=MAX_PART_BYTES)
