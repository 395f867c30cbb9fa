"""The backup data path for one dump: child process -> encoder -> fanout -> destinations.

``stream_dump`` returns only when pg_dump (or pg_dumpall) exited 0 and every live destination
holds every byte; if anything fails first, every upload is aborted (nothing visible is left) and
the error is raised. Committing manifests is the caller's job, after this returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from backup.config import CodecConfig
from backup.errors import DatabaseError
from backup.postgres.processes import ChildGroup
from backup.storage import Storage
from backup.stream.codec import open_encoder
from backup.stream.fanout import DestinationUpload, Fanout
from backup.stream.progress import Progress

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1024 * 1024


@dataclass
class StreamResult:
    raw_bytes: int
    stored_bytes: int
    sha256: str
    seconds: float
    uploads: list[DestinationUpload]


def stream_dump(
    argv: Sequence[str],
    env: dict[str, str],
    tool_name: str,
    codec: CodecConfig,
    targets: list[tuple[Storage, str]],
    progress: Progress,
    head: IO[bytes] | None = None,
    head_limit_bytes: int = 0,
) -> StreamResult:
    """Run ``argv`` and stream its output to every target. With ``head``, the first
    ``head_limit_bytes`` of the raw output are also written there (a custom-format archive's
    table of contents: what the dump holds, read after the stream by the caller)."""
    started = time.monotonic()
    fanout = Fanout(targets)
    encoder = open_encoder(codec, fanout)
    raw = 0
    # A compressor copies what it is given: one buffer is read into again and again (no 1 MiB
    # allocation, and its page faults, per MiB dumped). Without compression the chunks go to
    # the destinations' queues as they are, so each must be its own.
    reuse = codec.compression != "none"
    buffer = memoryview(bytearray(READ_CHUNK_BYTES))
    try:
        with ChildGroup() as children:
            dump = children.start(argv, env, tool_name)
            while True:
                if reuse:
                    n = dump.stdout.readinto(buffer)
                    chunk: bytes | memoryview = buffer[:n]
                else:
                    chunk = dump.stdout.read(READ_CHUNK_BYTES)
                    n = len(chunk)
                if not n:
                    break
                if head is not None and raw < head_limit_bytes:
                    head.write(chunk[: head_limit_bytes - raw])
                raw += n
                encoder.write(chunk)
                progress.update(raw, fanout.size)
            # The child's status is checked before any destination is told the stream ended.
            children.finish()
            encoder.close()
            if raw == 0:
                raise DatabaseError(
                    f"{tool_name} exited 0 but produced no output",
                    hint="an empty dump is never a backup: check the server's logs",
                )
    except BaseException as err:
        progress.close()
        encoder.abort()  # an encryptor's worker thread stops without writing a trailer
        fanout.abort(err)
        raise
    progress.close()
    try:
        uploads = fanout.commit()
    except BaseException as err:  # a signal (or BACKUP_TIMEOUT) while the uploads finish
        fanout.abort(err)
        raise
    return StreamResult(
        raw_bytes=raw,
        stored_bytes=fanout.size,
        sha256=fanout.sha256.hexdigest(),
        seconds=time.monotonic() - started,
        uploads=uploads,
    )
