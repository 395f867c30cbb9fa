"""Packs: the small files of a directory-format backup stored several to an object.

One object per file costs one upload (and, on a cloud, one request's price) per table: 3,000
small tables took 20 s where the custom format took 2. A file smaller than
BACKUP_PACK_BELOW_KB (1 MiB unless set; ``toc.dat`` never) is encoded on its own
(compressed, encrypted: a stream any decoder opens alone) into memory and appended to the
open pack; a pack holding ``PACK_BYTES`` is sealed and stored, and the last one when pg_dump
is done. The manifest names, for each packed file, the pack's key, the file's ``offset`` in
it and its ``size_bytes``: ``restore --table`` reads only that range
(``Storage.open_range``), ``verify`` checks each file's sha256 over its range.

A pack is stored under ``<db>/_objects/xx/<64 hex><suffix>``, the HMAC (the address key) of its
own stored bytes: a name that says nothing of what it holds, never shared by two different
packs. Packs are never reused by a later backup (a small file is cheap to store again), so
every backup that packs stores its packs anew; prune's garbage collection removes a pack once
no manifest names it, like any content object.

Memory: the open pack (up to ``PACK_BYTES`` plus one file) and each pack being stored.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import threading
import zlib
from dataclasses import dataclass, replace
from typing import Any

import zstandard

from backup import manifest
from backup.config import Config
from backup.dump.reuse import Target
from backup.errors import BackupError, Interrupted, StorageError
from backup.stream.codec import DEFAULT_LEVEL, open_encoder

log = logging.getLogger(__name__)

PACK_BYTES = 8 * 1024 * 1024
"""A pack is sealed and stored once it holds this many stored bytes."""
_per_thread = threading.local()
_PACK_DOMAIN = b"pgbackup-job directory-format pack v1\0"


def packable(name: str, plain_bytes: int, below: int) -> bool:
    """Whether pg_dump's file ``name`` of ``plain_bytes`` goes into a pack."""
    return name != "toc.dat" and plain_bytes < below


@dataclass(frozen=True)
class Member:
    name: str
    plain: int
    offset: int
    size: int
    sha256: str


class _Sink(io.BytesIO):
    """The encoder's sink: it closes it when done; its bytes are still wanted then."""

    def close(self) -> None:
        return None


class Packer:
    """Collects the small files of one run into packs and stores each pack on every live
    target; ``add`` from any upload thread, ``flush`` once every file was added."""

    def __init__(
        self, config: Config, targets: list[Target], database: str, suffix: str, tag: bytes
    ) -> None:
        self.config = config
        # a small file is compressed in its upload thread: zstd workers would cost more than it
        self.codec = replace(config.codec, threads=0)
        self.targets = targets
        self.database = database
        self.suffix = suffix
        self.tag = tag
        self.lock = threading.Lock()
        self.buffer = bytearray()
        self.members: list[Member] = []
        self.new_bytes = 0
        self.packs = 0

    def add(self, name: str, path: str, stop: threading.Event) -> int:
        """Encode the file at ``path`` into the open pack; store the pack if it is full.
        Returns the file's plain bytes."""
        if stop.is_set():
            raise Interrupted("the directory-format backup was stopped")
        with open(path, "rb") as source:
            plain_data = source.read()
        plain = len(plain_data)
        data = self._encode(plain_data)
        sealed = None
        with self.lock:
            member = Member(
                name, plain, len(self.buffer), len(data), hashlib.sha256(data).hexdigest()
            )
            self.buffer += data
            self.members.append(member)
            if len(self.buffer) >= PACK_BYTES:
                sealed = self._seal()
        if sealed is not None:
            self._store(*sealed)
        os.unlink(path)
        return plain

    def _encode(self, plain: bytes) -> bytes:
        """One file's stored bytes: compressed in one call (a compressor kept per thread: making
        one per small file cost more than compressing it), then encrypted on its own."""
        compression = self.codec.compression
        level = self.codec.level or DEFAULT_LEVEL.get(compression, 0)
        if compression == "zstd":
            compressor = getattr(_per_thread, "zstd", None)
            if compressor is None or _per_thread.level != level:
                params = zstandard.ZstdCompressionParameters.from_level(level, write_checksum=1)
                compressor = zstandard.ZstdCompressor(compression_params=params)
                _per_thread.zstd, _per_thread.level = compressor, level
            data = compressor.compress(plain)
        elif compression == "gzip":
            gzip = zlib.compressobj(level, zlib.DEFLATED, 31)
            data = gzip.compress(plain) + gzip.flush()
        else:
            data = plain
        if not self.codec.encrypted:
            return data
        sink = _Sink()
        encoder = open_encoder(replace(self.codec, compression="none"), sink)
        try:
            encoder.write(data)
            encoder.close()
        except BaseException:
            encoder.abort()
            raise
        return sink.getvalue()

    def flush(self) -> None:
        """Store the last pack (pg_dump is done, every file added)."""
        with self.lock:
            sealed = self._seal() if self.members else None
        if sealed is not None:
            self._store(*sealed)

    def _seal(self) -> tuple[bytes, list[Member]]:
        sealed = (bytes(self.buffer), self.members)
        self.buffer = bytearray()
        self.members = []
        return sealed

    def _store(self, data: bytes, members: list[Member]) -> None:
        """The pack on every live target, at its own address there; each member named in
        the target's file list once stored."""
        for target in [t for t in self.targets if t.error is None]:
            mac = hmac.new(target.key, _PACK_DOMAIN + self.tag, "sha256")
            mac.update(data)
            key = manifest.content_key(self.database, mac.hexdigest(), self.suffix)
            try:
                target.storage.put(key, io.BytesIO(data))
            except BackupError as err:
                with self.lock:
                    if target.error is None:
                        target.error = err
                continue
            except Exception as err:  # a backend's own failure: this destination fails alone
                with self.lock:
                    if target.error is None:
                        target.error = StorageError(
                            f"{target.storage.url}: upload of a pack: {err}"
                        )
                continue
            with self.lock:
                target.uploaded.append(key)
                target.packs[key] = len(data)
                target.files.extend(entry(m, key) for m in members)
        with self.lock:
            self.new_bytes += len(data)
            self.packs += 1
        log.debug("stored a pack of %d files, %d bytes", len(members), len(data))


def entry(member: Member, key: str) -> dict[str, Any]:
    """A packed file of the manifest: its pack's key, its range there, its sha256 over the
    range; ``fingerprint`` is the pack's listing's, set by ``reuse.recheck``."""
    return {
        "name": member.name,
        "key": key,
        "offset": member.offset,
        "plain_bytes": member.plain,
        "size_bytes": member.size,
        "sha256": member.sha256,
        "new": True,
        "fingerprint": None,
    }
