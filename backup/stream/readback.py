"""Reading a stored backup back: the verified download stream, then decryption and decompression.

``open_archive`` returns the object as stored, counted and hashed on the way
(``VerifyingReader``: a size or sha256 mismatch with the manifest raises ``IntegrityError`` at the
end of the stream, before the caller trusts what it read), and the decrypted, decompressed
archive. What reads that archive (pg_restore, psql) lives in ``backup.postgres``.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from backup.config import CodecConfig
from backup.errors import BackupError, IntegrityError, StorageError
from backup.manifest import Manifest, untrusted_error
from backup.storage import Readable, Storage
from backup.stream.codec import open_decoder
from backup.stream.progress import ReadProgress

CHUNK_BYTES = 1024 * 1024


class VerifyingReader:
    """Counts and hashes what it reads; at the end, a mismatch with the manifest raises
    ``IntegrityError`` (exit 5) before the caller may trust what it read. With ``progress``,
    each read tells it the bytes read so far (in the thread that reads: the download's)."""

    def __init__(
        self,
        source: BinaryIO,
        manifest: Manifest,
        destination: str,
        progress: ReadProgress | None = None,
    ) -> None:
        self.source = source
        self.manifest = manifest
        self.destination = destination
        self.progress = progress
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.done = False

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self.source.read(size if size and size > 0 else CHUNK_BYTES)
        except BackupError:
            raise
        except Exception as err:
            raise StorageError(f"{self.destination}: download failed: {err}") from err
        if chunk:
            self.sha256.update(chunk)
            self.size += len(chunk)
            if self.progress is not None:
                self.progress.read(self.size)
        elif not self.done:
            self.done = True
            if self.progress is not None:
                self.progress.close()
            self.check()
        return chunk

    def check(self) -> None:
        m = self.manifest
        if self.size != m.size_bytes:
            raise IntegrityError(
                f"{m.name} on {self.destination} is {self.size} bytes, the manifest says "
                f"{m.size_bytes}: the object is truncated or was replaced"
            )
        if self.sha256.hexdigest() != m.sha256:
            raise IntegrityError(
                f"{m.name} on {self.destination}: sha256 mismatch (stored object altered)"
            )

    def drain(self) -> None:
        while self.read(CHUNK_BYTES):
            pass


def open_archive(
    codec: CodecConfig,
    storage: Storage,
    m: Manifest,
    progress_s: float = 0.0,
    purpose: str = "read",
) -> tuple[VerifyingReader, Readable]:
    """The stored object of ``m`` as a ``VerifyingReader``, and the decrypted, decompressed
    archive read through it. A manifest that is not about its own object is refused before
    anything is read (exit 5): its object may be another backup's, or any key at all.

    ``progress_s`` (``BACKUP_PROGRESS_SECONDS``; 0: none): a line ``<purpose> <name>: X of Y MB
    read (P%), rate, time left`` that often while the object is read, whoever reads it."""
    reason = m.problem()
    if reason:
        raise untrusted_error(m.key, reason)
    raw = storage.open(m.object_key)
    progress = ReadProgress(f"{purpose} {m.name}", progress_s, m.size_bytes) if progress_s else None
    verifying = VerifyingReader(raw, m, storage.url, progress)
    if m.encrypted and not (codec.age_identity or codec.age_passphrase):
        raw.close()
        raise IntegrityError(
            f"{m.name} is encrypted and no key is configured",
            hint="set BACKUP_AGE_IDENTITY or BACKUP_AGE_IDENTITY_FILE (or BACKUP_AGE_PASSPHRASE)",
        )
    if m.encrypted and m.encryption:
        from backup.stream.age import identity_matches

        if identity_matches(codec, list(m.encryption.get("recipients", []))) is False:
            raw.close()
            raise IntegrityError(
                f"{m.name} was encrypted to other keys than BACKUP_AGE_IDENTITY",
                hint="use the private key of one of the recipients recorded in the manifest "
                f"({', '.join(m.encryption.get('recipients', []))})",
            )
    return verifying, open_decoder(verifying, m.compression, m.encrypted, codec)
