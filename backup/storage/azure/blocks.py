"""The block half of ``AzureStorage.put``: a stream longer than one part, staged as blocks of
one block blob and committed by one ``Put Block List``.

https://learn.microsoft.com/rest/api/storageservices/understanding-block-blobs--append-blobs--and-page-blobs:
a staged block (``Put Block``) is invisible; the blob changes only when the block list is
committed, all at once (an older blob under the same name stays as it was until then). Each
block is staged with up to ``parts_in_flight`` in flight, each retried on its own (``retry.py``).
On any failure the upload stops and ``discard`` removes the staged blocks where nothing was
committed under the name (``storage.py``); where an older blob exists, they are left to Azure,
which drops uncommitted blocks a week after the last one was staged.

Memory: at most ``parts_in_flight`` blocks of ``part_size_bytes`` are held (the one being read
from the stream counts as one): a slot is taken before each read and freed when that block's
``Put Block`` ends.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from azure.storage.blob import BlobBlock, ContentSettings

from backup.config import MIB, RetryConfig
from backup.errors import StorageError
from backup.storage import parts
from backup.storage.azure.errors import is_permanent
from backup.storage.base import Readable
from backup.storage.parts import read_part
from backup.storage.retry import retrying

logger = logging.getLogger(__name__)

# https://learn.microsoft.com/rest/api/storageservices/put-block-list#remarks
MAX_BLOCKS = 50_000
# https://learn.microsoft.com/rest/api/storageservices/put-block#remarks (version 2019-12-12+)
MAX_BLOCK_BYTES = 4000 * MIB
CONTENT_TYPE = "application/octet-stream"


class BlockUploader:
    """Staged-block uploads into one container; see the module docstring."""

    def __init__(
        self,
        error: Callable[[BaseException, str, str], StorageError],
        retry: RetryConfig,
        parts_in_flight: int,
    ) -> None:
        self.error = error
        self.retry = retry
        self.parts_in_flight = max(1, parts_in_flight)

    def put(self, key: str, blob: Any, handed: list[bytearray], stream: Readable) -> int:
        """Stage the first block (popped from ``handed``, so the caller keeps no reference) and
        the rest of ``stream``, then commit them; return the byte count. On failure, raise
        (the stream's own exception unchanged) after calling ``discard``."""
        block_size = len(handed[0])
        # One token per upload: its blocks never mix with a crashed upload's of the same name.
        token = secrets.token_hex(8)
        slots = threading.BoundedSemaphore(self.parts_in_flight)
        stop = threading.Event()
        failure: list[BaseException] = []
        executor = ThreadPoolExecutor(self.parts_in_flight, thread_name_prefix="azure-block")
        futures: list[Future[None]] = []
        ids: list[str] = []
        size = 0

        def stage(number: int, block_id: str, data: bytearray) -> None:
            try:
                if stop.is_set():
                    return
                retrying(
                    self.retry,
                    is_permanent,
                    what=f"upload of {key} block {number}",
                    stop_event=stop,
                )(blob.stage_block, block_id, data, length=len(data))
            except BaseException as err:
                failure.append(err)
                stop.set()
            finally:
                del data
                slots.release()

        try:
            data = handed.pop()
            slots.acquire()  # the slot of the block already read
            while data:
                if len(ids) >= MAX_BLOCKS:
                    raise StorageError(
                        f"{key} needs more than {MAX_BLOCKS} blocks of {block_size // MIB} MiB",
                        hint="raise BACKUP_PART_SIZE_MB",
                    )
                block_id = base64.b64encode(f"{token}-{len(ids):06d}".encode()).decode()
                ids.append(block_id)
                futures.append(executor.submit(stage, len(ids), block_id, data))
                size += len(data)
                del data  # the worker holds the only reference now: memory stays bounded
                parts.take_slot(slots, stream, lambda: _raise_failure(failure, self.error, key))
                data = read_part(stream, block_size)
            slots.release()
            for future in futures:
                future.result()
            _raise_failure(failure, self.error, key)
            commit = retrying(self.retry, is_permanent, what=f"commit of {key}")
            try:
                commit(
                    blob.commit_block_list,
                    [BlobBlock(block_id=i) for i in ids],
                    content_settings=ContentSettings(content_type=CONTENT_TYPE),
                )
            except Exception as err:
                raise self.error(err, "upload", key) from err
        except BaseException:
            stop.set()
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            executor.shutdown(wait=True)
        return size


def _raise_failure(
    failure: list[BaseException], error: Callable[[BaseException, str, str], StorageError], key: str
) -> None:
    if failure:
        raise error(failure[0], "upload", key) from failure[0]
