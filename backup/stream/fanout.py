"""One byte stream, several destinations: hash, count and tee through bounded queues.

``Fanout`` is the sink at the end of the encoder. Each destination's ``Storage.put`` runs in its
own thread and reads from its own bounded queue; ``write`` blocks while any live destination's
queue is full, so the slowest destination sets the pace and, through the pipe, pg_dump blocks
too. Memory: ``QUEUE_CHUNKS`` chunks (at most ``codec.WRITE_CHUNK_BYTES``, 1 MiB, each) per
destination, plus what each backend holds (part size x parts in flight).

A destination that fails is dropped from the tee and reported; the others go on. ``commit()``
ends every stream normally; ``abort(err)`` makes every reader raise, so each backend aborts its
upload and leaves nothing visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass

from backup.errors import StorageError
from backup.storage import Storage

log = logging.getLogger(__name__)

# Enough to keep a backend busy while the encoder works; each chunk is up to 1 MiB.
QUEUE_CHUNKS = 4
_POLL_S = 0.5
# abort() waits this long in all for the destinations to abort their uploads. A backend stuck
# past it (a hung server) is left behind: its thread is a daemon, its unfinished upload is
# invisible and removed by a later run's cleanup. SIGTERM must end a run within 20 s.
ABORT_DEADLINE_S = 10.0


class StreamAborted(Exception):
    """Raised from a destination's reader when the dump failed: the upload must not commit."""


_EOF = object()
_EMPTY = memoryview(b"")  # what is left of a chunk once read: holds no chunk alive


class _QueueReader:
    """The readable a backend's ``put`` consumes; fed by ``Fanout``."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._buffer = _EMPTY
        self._done = False
        self.aborted: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes; ``StreamAborted`` once the dump failed, even for ``read(0)``
        (a backend waiting on its own parts polls with it)."""
        if self.aborted is not None and not self._done:
            self._done = True
            raise StreamAborted(str(self.aborted)) from self.aborted
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        pieces: list[memoryview] = []
        taken = 0
        while taken < size:
            if not self._buffer:
                if self._done:
                    break
                try:
                    # Polled, not a plain get(): a signal can interrupt the producer inside
                    # queue.put, and a wake-up lost there must not leave this thread (and its
                    # unfinished upload) waiting for ever once the stream is aborted.
                    item = self.queue.get(timeout=_POLL_S)
                except queue.Empty:
                    if self.aborted is not None:
                        self._done = True
                        raise StreamAborted(str(self.aborted)) from self.aborted
                    continue
                if item is _EOF:
                    self._done = True
                    break
                if isinstance(item, BaseException):
                    self._done = True
                    raise StreamAborted(str(item)) from item
                self._buffer = memoryview(item)  # type: ignore[arg-type]
            take = self._buffer[: size - taken]
            pieces.append(take)
            taken += len(take)
            self._buffer = self._buffer[len(take) :] if len(take) < len(self._buffer) else _EMPTY
        if len(pieces) == 1 and isinstance(pieces[0].obj, bytes) and len(pieces[0].obj) == taken:
            return pieces[0].obj  # a whole chunk as it was queued: no copy
        return b"".join(pieces)


@dataclass
class DestinationUpload:
    storage: Storage
    key: str
    reader: _QueueReader
    thread: threading.Thread | None = None
    size: int | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.size is not None


class Fanout:
    """Tee bytes to ``put(key, ...)`` on every storage; sha256 and byte count on the way."""

    def __init__(self, targets: list[tuple[Storage, str]]) -> None:
        self.uploads = [DestinationUpload(s, k, _QueueReader()) for s, k in targets]
        self.sha256 = hashlib.sha256()
        self.size = 0
        for upload in self.uploads:
            upload.thread = threading.Thread(
                target=self._run, args=(upload,), name=f"upload-{upload.storage.url}", daemon=True
            )
            upload.thread.start()

    def _run(self, upload: DestinationUpload) -> None:
        try:
            upload.size = upload.storage.put(upload.key, upload.reader)
        except BaseException as err:  # reported per destination by commit()/abort()
            upload.error = err

    def _live(self) -> list[DestinationUpload]:
        return [u for u in self.uploads if u.error is None]

    def _offer(self, upload: DestinationUpload, item: object) -> None:
        """Blocking put that gives up if the destination's thread died (no deadlock)."""
        assert upload.thread is not None
        while upload.error is None and upload.thread.is_alive():
            try:
                upload.reader.queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        self.sha256.update(data)
        self.size += len(data)
        live = self._live()
        if not live:
            failures = "; ".join(_with_url(u.storage.url, u.error) for u in self.uploads)
            # the backend's own hint (a local folder's owner, a bucket's credentials)
            hints = [u.error.hint for u in self.uploads if isinstance(u.error, StorageError)]
            raise StorageError(
                f"every destination failed: {failures}", hint=hints[0] if hints else None
            )
        for upload in live:
            self._offer(upload, data)
        return len(data)

    def close(self) -> None:
        """The encoder closes its sink when it has flushed; committing is explicit."""

    def commit(self) -> list[DestinationUpload]:
        """End every stream normally and wait; returns every upload with its outcome."""
        for upload in self._live():
            self._offer(upload, _EOF)
        self._join()
        for upload in self.uploads:
            if upload.error is None and upload.size != self.size:
                upload.error = StorageError(
                    f"{upload.storage.url}: stored {upload.size} bytes, expected {self.size}"
                )
        return self.uploads

    def abort(self, reason: BaseException) -> None:
        """Make every reader raise so each backend aborts its upload; wait for them, at most
        ``ABORT_DEADLINE_S`` in all."""
        for upload in self.uploads:
            upload.reader.aborted = reason
        for upload in self.uploads:
            # Drain what is queued so the error is seen at once, then post it.
            while True:
                try:
                    upload.reader.queue.get_nowait()
                except queue.Empty:
                    break
            with contextlib.suppress(queue.Full):
                upload.reader.queue.put_nowait(reason)
        self._join(deadline=time.monotonic() + ABORT_DEADLINE_S)
        for upload in self.uploads:
            assert upload.thread is not None
            if not upload.thread.is_alive() and upload.error is None:
                # The backend had read the whole stream before the abort and finished its put:
                # an object no manifest will ever commit. Removed, so nothing is left visible.
                try:
                    upload.storage.delete([upload.key])
                except Exception as err:  # the later orphan cleanup removes it
                    log.warning(
                        "%s: could not remove %s after the abort: %s",
                        upload.storage.url,
                        upload.key,
                        err,
                        extra={"stage": "abort", "destination": upload.storage.url},
                    )
                else:
                    log.info(
                        "%s: removed %s, finished as the run was aborted",
                        upload.storage.url,
                        upload.key,
                        extra={"stage": "abort", "destination": upload.storage.url},
                    )
            elif upload.thread.is_alive():
                log.warning(
                    "%s: the upload did not stop within %.0f s; its unfinished upload is left "
                    "for a later run's cleanup",
                    upload.storage.url,
                    ABORT_DEADLINE_S,
                    extra={"stage": "abort", "destination": upload.storage.url},
                )

    def _join(self, deadline: float | None = None) -> None:
        for upload in self.uploads:
            assert upload.thread is not None
            if deadline is None:
                upload.thread.join()
            else:
                upload.thread.join(max(0.0, deadline - time.monotonic()))


def _with_url(url: str, error: BaseException | None) -> str:
    """``url: error``, unless the backend's message already names the destination."""
    text = str(error)
    return text if text.startswith(url) else f"{url}: {text}"
