"""The streaming half of ``GCSStorage.put``: a stream longer than one part, sent as the chunks
of one resumable upload session.

https://cloud.google.com/storage/docs/performing-resumable-uploads: the session is opened by
google-cloud-storage (``Blob.create_resumable_upload_session``); each chunk is one ``PUT`` with
``Content-Range: bytes a-b/*``, a multiple of 256 KiB, until the stream ends; the last ``PUT``
names the total size, and only then does the object exist (a new generation: an older object
under the same name stays as it was until that moment). A chunk whose ``PUT`` fails is retried
on its own (``retry.py``): the session is asked how many bytes it holds (``bytes */*``) and the
rest of the chunk is sent again. On any failure the session is cancelled (``DELETE``), so the
upload can never be completed; a session nobody cancels (a killed run) expires after a week,
holds nothing anyone can list or read, and cannot be found by anyone without its URL.

Memory: one chunk. The protocol sends chunks one after the other anyway, so a chunk is read,
sent (and retried) and dropped once the server confirmed it, before the next is read; while it
is sent, the dump keeps running into the destination's bounded queue (``stream/fanout.py``,
4 MiB), which the next chunk's read empties again at once. A second chunk read
during the ``PUT`` (as this module once did, in a worker thread) would overlap a little more
reading with sending for a whole chunk of memory more.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from google.api_core import exceptions as gexc

from backup.config import RetryConfig
from backup.storage.base import Readable
from backup.storage.gcs.errors import is_permanent, storage_error
from backup.storage.parts import read_part
from backup.storage.retry import retrying

logger = logging.getLogger(__name__)

# Every chunk but the last is a multiple of this:
# https://cloud.google.com/storage/docs/performing-resumable-uploads#chunked-upload
CHUNK_MULTIPLE = 256 * 1024
CONTENT_TYPE = "application/octet-stream"
# (connect, read) seconds for one chunk's PUT.
TIMEOUT_S = (10.0, 120.0)
RANGE = re.compile(r"bytes=0-(\d+)")


class ResumableUploader:
    """Resumable uploads into one bucket; see the module docstring."""

    def __init__(self, session: Any, url: str, bucket: str, retry: RetryConfig) -> None:
        self.session = session
        self.url = url
        self.bucket = bucket
        self.retry = retry

    def put(self, key: str, blob: Any, handed: list[bytearray], stream: Readable) -> int:
        """Upload the first chunk (popped from ``handed``: the caller keeps no reference) and
        the rest of ``stream`` to ``blob``; return the byte count."""
        chunk_size = len(handed[0])
        if chunk_size % CHUNK_MULTIPLE:
            raise ValueError(f"chunk size {chunk_size} is not a multiple of 256 KiB")
        try:
            session_url = retrying(self.retry, is_permanent, what=f"upload of {key}")(
                blob.create_resumable_upload_session, content_type=CONTENT_TYPE, retry=None
            )
        except Exception as err:
            raise storage_error(
                err, url=self.url, bucket=self.bucket, action="upload", key=key
            ) from err
        stop = threading.Event()  # never set: no other thread sends this upload's chunks
        offset = 0
        try:
            data = handed.pop()
            while len(data) == chunk_size:
                self._send(key, session_url, offset, data, None, stop)
                offset += len(data)
                del data  # confirmed by the server: dropped before the next chunk is read
                data = read_part(stream, chunk_size)
            total = offset + len(data)
            self._send(key, session_url, offset, data, total, stop)
            return total
        except BaseException:
            self._cancel(key, session_url)
            raise  # the stream's own exception unchanged, or a StorageError from a chunk

    def _send(
        self,
        key: str,
        session_url: str,
        offset: int,
        data: bytearray,
        total: int | None,
        stop: threading.Event,
    ) -> None:
        """One chunk (the last when ``total`` is given), retried on its own."""
        attempts = {"n": 0}

        def attempt() -> None:
            attempts["n"] += 1
            start = offset
            if attempts["n"] > 1:
                # The server may hold part of the chunk: send only what it lacks.
                received = self._received(session_url, total)
                if received is None:
                    return  # the last chunk had arrived: the object exists
                start = max(offset, min(received, offset + len(data)))
            body = ChunkBody(memoryview(data)[start - offset :])
            size = "*" if total is None else str(total)
            if len(body):
                content_range = f"bytes {start}-{start + len(body) - 1}/{size}"
            else:
                content_range = f"bytes */{size}"
            response = self.session.put(
                session_url,
                data=body if len(body) else b"",
                headers={"Content-Range": content_range},
                timeout=TIMEOUT_S,
                allow_redirects=False,
            )
            _check(response, final=total is not None)

        try:
            retrying(
                self.retry,
                is_permanent,
                what=f"upload of {key} at byte {offset}",
                stop_event=stop,
            )(attempt)
        except Exception as err:
            raise storage_error(
                err,
                url=self.url,
                bucket=self.bucket,
                action="upload",
                key=key,
                secrets=(session_url,),
            ) from err

    def _received(self, session_url: str, total: int | None) -> int | None:
        """How many bytes the session holds (a status query: an empty PUT); ``None`` when the
        upload is finished (the last chunk arrived, its answer did not)."""
        response = self.session.put(
            session_url,
            data=b"",
            headers={"Content-Range": "bytes */*"},
            timeout=TIMEOUT_S,
            allow_redirects=False,
        )
        if total is not None and response.status_code in (200, 201):
            return None
        _check(response, final=False)
        match = RANGE.fullmatch(response.headers.get("Range", ""))
        received = int(match[1]) + 1 if match else 0
        # GCS keeps a chunk's bytes in whole 256 KiB units; anything else is not a count to
        # resume from (gcp-storage-emulator answers "bytes=0-0" for none at all).
        return received - received % CHUNK_MULTIPLE

    def _cancel(self, key: str, session_url: str) -> None:
        """End the session so that nobody can complete it; a failure here changes nothing
        visible (the session expires by itself), so it is logged, not raised."""
        try:
            response = self.session.delete(session_url, timeout=TIMEOUT_S)
        except Exception as err:
            logger.warning("could not cancel the upload session of %s: %s", key, type(err).__name__)
            return
        if response.status_code not in (499, 200, 204, 404, 410):
            logger.debug("cancelling the upload session of %s: HTTP %d", key, response.status_code)


class ChunkBody:
    """A chunk as a request body, read in pieces: the chunk is never copied whole (requests
    would iterate a bytearray byte by byte, and ``bytes(chunk)`` is a third chunk of memory)."""

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.offset = 0

    def __len__(self) -> int:
        return len(self.view) - self.offset

    def read(self, size: int = -1) -> bytes:
        end = len(self.view)
        if size is not None and size >= 0:
            end = min(end, self.offset + size)
        piece = bytes(self.view[self.offset : end])
        self.offset = end
        return piece


def _check(response: Any, *, final: bool) -> None:
    """Raise the google.api_core error of a response that is not what a chunk expects: 308
    (resume incomplete) for one in the middle, 200/201 for the last."""
    expected = (200, 201) if final else (308,)
    if response.status_code in expected:
        return
    if response.status_code == 308:
        raise gexc.ServiceUnavailable("the session was not finished by its last chunk")
    raise gexc.from_http_response(response)
