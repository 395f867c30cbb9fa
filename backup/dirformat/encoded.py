"""A directory-format file's stored bytes, written to the spool before they are uploaded.

Each file to store is compressed and encrypted in the calling thread into a file of the spool
(``encode_file``: its size and sha256 on the way), then each destination's ``Storage.put``
reads that file (``put_file``), every destination the same bytes. Spooling the encoded copy
instead of teeing the encoder's output to one upload thread per destination through queues
(``stream/fanout.py``, the custom format's way) keeps a file's upload to what the storage holds
itself (its parts in flight: for S3 the object, up to ``parts_in_flight`` x the part size),
with no queue, no thread per destination and no zstd worker threads on top.

Memory: per file being encoded, zstd's context (about 3 MiB at level 3, compressing in the
calling thread) and one ``READ_BYTES`` buffer (and age's pipe when encrypted); per upload, the
storage's parts. Spool: the encoded copy, about the compressed size of the file beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import BinaryIO

from backup.config import CodecConfig
from backup.errors import Interrupted
from backup.storage import Storage
from backup.stream.codec import open_encoder

READ_BYTES = 256 * 1024


class _Sink:
    """The encoder's sink: the encoded file, with its size and sha256."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        self.out.flush()


def encode_file(
    codec: CodecConfig, source: str, dest: str, stop: threading.Event
) -> tuple[int, str]:
    """Compress and encrypt the file ``source`` into ``dest``; returns the stored size and
    sha256. Raises ``Interrupted`` as soon as ``stop`` is set."""
    with open(dest, "wb") as out, open(source, "rb") as plain:
        sink = _Sink(out)
        encoder = open_encoder(replace(codec, threads=0), sink)
        try:
            buffer = bytearray(READ_BYTES)
            view = memoryview(buffer)
            while count := plain.readinto(buffer):
                if stop.is_set():
                    raise Interrupted("the directory-format backup was stopped")
                # consumed before write returns (zstd and gzip compress it, age copies it into
                # its pipe, the sink writes it): the buffer is reused
                encoder.write(view[:count])
            encoder.close()
        except BaseException:
            encoder.abort()
            raise
    return sink.size, sink.sha256.hexdigest()


class _StoppableFile:
    """A file read by ``Storage.put`` that raises ``Interrupted`` once ``stop`` is set: the
    storage aborts its upload (nothing visible) and re-raises it."""

    def __init__(self, source: BinaryIO, stop: threading.Event) -> None:
        self.source = source
        self.stop = stop

    def read(self, size: int = -1) -> bytes:
        if self.stop.is_set():
            raise Interrupted("the directory-format backup was stopped")
        # a storage that reads a part in large reads (S3: 1 MiB) gets it in pieces: each read
        # is a new bytes object, held until the storage copied it
        return self.source.read(READ_BYTES if size is None or size < 0 else min(size, READ_BYTES))


def put_file(
    path: str, destinations: Sequence[tuple[Storage, str]], stop: threading.Event
) -> list[BaseException | None]:
    """The file ``path`` stored at each ``(storage, key)``, the destinations at once; each
    one's failure (or None), in order."""

    def put(storage: Storage, key: str) -> BaseException | None:
        try:
            with open(path, "rb") as source:
                storage.put(key, _StoppableFile(source, stop))
        except BaseException as err:  # reported per destination by the caller
            return err
        return None

    if len(destinations) == 1:
        return [put(*destinations[0])]
    with ThreadPoolExecutor(len(destinations), thread_name_prefix="dir-put") as pool:
        return list(pool.map(lambda d: put(*d), destinations))


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
