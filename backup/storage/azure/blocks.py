"""The block half of ``AzureStorage.put``: a stream longer than one part, staged as blocks of
one block blob and committed by one ``Put Block List``.

https://learn.microsoft.com/rest/api/storageservices/understanding-block-blobs--append-blobs--and-page-blobs:
a staged block (``Put Block``) is invisible; the blob changes only when the block list is
committed, all at once (an older blob under the same name stays as it was until then). Blocks
are staged one after the other, each retried on its own (``retry.py``). On any failure the
upload stops and ``discard`` removes the staged blocks where nothing was committed under the
name (``storage.py``); where an older blob exists, they are left to Azure, which drops
uncommitted blocks a week after the last one was staged.

Memory: one block of ``part_size_bytes``: a block is read, staged (and retried) and dropped once
Azure confirmed it, before the next is read. While it is staged, the dump keeps running into
the destination's bounded queue (``stream/fanout.py``, 4 MiB), which the next block's read
empties again at once. Staging blocks in parallel (as this module once did, two at a time)
overlapped reading and sending a little more for a whole block of memory more.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from typing import Any

from azure.storage.blob import BlobBlock, ContentSettings

from backup.config import MIB, RetryConfig
from backup.errors import StorageError
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
        self, error: Callable[[BaseException, str, str], StorageError], retry: RetryConfig
    ) -> None:
        self.error = error
        self.retry = retry

    def put(self, key: str, blob: Any, handed: list[bytearray], stream: Readable) -> int:
        """Stage the first block (popped from ``handed``, so the caller keeps no reference) and
        the rest of ``stream``, then commit them; return the byte count. On failure, raise
        (the stream's own exception unchanged); the caller discards the staged blocks."""
        block_size = len(handed[0])
        # One token per upload: its blocks never mix with a crashed upload's of the same name.
        token = secrets.token_hex(8)
        ids: list[str] = []
        size = 0
        data = handed.pop()
        while data:
            if len(ids) >= MAX_BLOCKS:
                raise StorageError(
                    f"{key} needs more than {MAX_BLOCKS} blocks of {block_size // MIB} MiB",
                    hint="raise BACKUP_PART_SIZE_MB",
                )
            block_id = base64.b64encode(f"{token}-{len(ids):06d}".encode()).decode()
            ids.append(block_id)
            self._stage(key, blob, len(ids), block_id, data)
            size += len(data)
            del data  # confirmed by Azure: dropped before the next block is read
            data = read_part(stream, block_size)
        commit = retrying(self.retry, is_permanent, what=f"commit of {key}")
        try:
            commit(
                blob.commit_block_list,
                [BlobBlock(block_id=i) for i in ids],
                content_settings=ContentSettings(content_type=CONTENT_TYPE),
            )
        except Exception as err:
            raise self.error(err, "upload", key) from err
        return size

    def _stage(self, key: str, blob: Any, number: int, block_id: str, data: bytearray) -> None:
        """One ``Put Block``, retried on its own."""
        try:
            retrying(self.retry, is_permanent, what=f"upload of {key} block {number}")(
                blob.stage_block, block_id, data, length=len(data)
            )
        except Exception as err:
            raise self.error(err, "upload", key) from err
