"""The read side of a directory-format backup: every file the manifest lists downloaded,
``jobs`` at a time, its size and sha256 checked against the manifest on the way
(``VerifyingReader``), decrypted, decompressed and written into a folder named as in
``toc.dat``: what ``pg_restore -Fd`` reads.

A manifest that is not believed about its own backup is refused before anything is read
(exit 5): an object outside its database's ``_objects/`` folder, or a file name that is not one
of pg_dump's (``../x``) never reaches the disk. A mismatch is an ``IntegrityError`` (exit 5).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from backup.config import CodecConfig
from backup.errors import IntegrityError, Interrupted
from backup.manifest import SAFE_FILE_NAME, Manifest, untrusted_error
from backup.storage import Storage
from backup.stream.codec import open_decoder
from backup.stream.progress import ReadProgress
from backup.stream.readback import CHUNK_BYTES, VerifyingReader

log = logging.getLogger(__name__)


def check_readable(codec: CodecConfig, m: Manifest) -> None:
    """Refuse (exit 5) a manifest not believed, or an encrypted backup no key here opens."""
    reason = m.problem()
    if reason:
        raise untrusted_error(m.key, reason)
    if m.encrypted and not (codec.age_identity or codec.age_passphrase):
        raise IntegrityError(
            f"{m.name} is encrypted and no key is configured",
            hint="set BACKUP_AGE_IDENTITY or BACKUP_AGE_IDENTITY_FILE (or BACKUP_AGE_PASSPHRASE)",
        )
    if m.encrypted and m.encryption:
        from backup.stream.age import identity_matches

        recipients = list(m.encryption.get("recipients", []))
        if identity_matches(codec, recipients) is False:
            raise IntegrityError(
                f"{m.name} was encrypted to other keys than BACKUP_AGE_IDENTITY",
                hint="use the private key of one of the recipients recorded in the manifest "
                f"({', '.join(recipients)})",
            )


class _Tally:
    """One progress line for every file read at once: each file's reader tells its own count
    (``VerifyingReader`` calls ``read``/``close``), the sum goes to the ``ReadProgress``."""

    def __init__(self, progress: ReadProgress) -> None:
        self.progress = progress
        self.lock = threading.Lock()
        self.total = 0

    def for_file(self) -> _FileTally:
        return _FileTally(self)


class _FileTally:
    def __init__(self, tally: _Tally) -> None:
        self.tally = tally
        self.seen = 0

    def read(self, done_bytes: int) -> None:
        with self.tally.lock:
            self.tally.total += done_bytes - self.seen
            self.seen = done_bytes
            self.tally.progress.read(self.tally.total)

    def close(self) -> None:
        """The whole backup's progress is closed by ``fetch_folder``, not by one file."""


def fetch_folder(
    codec: CodecConfig,
    storage: Storage,
    m: Manifest,
    folder: str,
    jobs: int,
    keep: Callable[[str], bool] = lambda name: True,
    progress_s: float = 0.0,
    purpose: str = "read",
    only: Callable[[str], bool] = lambda name: True,
) -> int:
    """Download, check and decode every file of ``m`` into ``folder`` (which must exist);
    a file for which ``keep(name)`` is false is checked and decoded to its end but not
    written. Returns the stored bytes read. ``progress_s``: a line ``<purpose> <name>: X of
    Y MB read ...`` that often, all files together (BACKUP_PROGRESS_SECONDS). A file for which
    ``only(name)`` is false is not read at all (``restore --table``: toc.dat and the chosen
    tables' files); the manifest is still checked as a whole first."""
    check_readable(codec, m)
    stop = threading.Event()
    progress = ReadProgress(f"{purpose} {m.name}", progress_s, m.size_bytes) if progress_s else None
    tally = _Tally(progress) if progress else None
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="dir-download") as pool:
        futures = [
            pool.submit(_fetch_one, codec, storage, m, entry, folder, keep, stop, tally)
            for entry in m.files
            if only(entry["name"])
        ]
        try:
            total = sum(f.result() for f in futures)
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise
        finally:
            if progress is not None:
                progress.close()
    log.info(
        "%s: %d files, %d bytes read from %s, sha256 ok",
        m.name,
        len(futures),
        total,
        storage.url,
        extra={"stage": "restore", "destination": storage.url},
    )
    return total


def _fetch_one(
    codec: CodecConfig,
    storage: Storage,
    m: Manifest,
    entry: dict[str, Any],
    folder: str,
    keep: Callable[[str], bool],
    stop: threading.Event,
    tally: _Tally | None,
) -> int:
    name = entry["name"]
    if not SAFE_FILE_NAME.fullmatch(name):  # problem() refused it already; never a path
        raise untrusted_error(m.key, f"lists the file {name!r}")
    expected = replace(
        m, name=f"{m.name} ({name})", size_bytes=entry["size_bytes"], sha256=entry["sha256"]
    )
    raw = storage.open(entry["key"])
    try:
        shared = tally.for_file() if tally is not None else None
        verifying = VerifyingReader(raw, expected, storage.url, shared)  # type: ignore[arg-type]
        plain = open_decoder(verifying, m.compression, m.encrypted, codec)
        out = None
        if keep(name):
            fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            out = os.fdopen(fd, "wb")
        try:
            written = 0
            while chunk := plain.read(CHUNK_BYTES):
                if stop.is_set():
                    raise Interrupted("the download was stopped")
                written += len(chunk)
                if out is not None:
                    out.write(chunk)
            verifying.drain()
        finally:
            if out is not None:
                out.close()
        if written != entry["plain_bytes"]:
            raise IntegrityError(
                f"{m.name}: {name} decodes to {written} bytes, the manifest says "
                f"{entry['plain_bytes']}"
            )
        return verifying.size
    finally:
        raw.close()
