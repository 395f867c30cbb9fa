"""Packs: the small files of a directory-format backup stored several to an object.

One object per file costs one upload (and, on a cloud, one request's price) per table: 3,000
small tables took 20 s where the custom format took 2. A file smaller than
BACKUP_PACK_BELOW_KB (1 MiB unless set; ``toc.dat`` never) is encoded on its own
(compressed, encrypted: a stream any decoder opens alone) in memory and appended to the open
pack, a file of the spool; a pack holding ``PACK_BYTES`` is sealed and stored, and the last one
when pg_dump is done. The manifest names, for each packed file, the pack's key, the file's
``offset`` in it and its ``size_bytes``: ``restore --table`` reads only that range
(``Storage.open_range``), ``verify`` checks each file's sha256 over its range.

A pack is stored under ``<db>/_objects/xx/<64 hex><suffix>``, the keyed hash
(``dirformat/address.py``) of its own stored bytes: a name that says nothing of what it
holds, never shared by two different packs. Packs are never reused by a later backup (a small
file is cheap to store again), so every backup that packs stores its packs anew; prune's
garbage collection removes a pack once no manifest names it, like any content object.

Memory: one small file and its encoding per upload thread; the open pack is a file of the spool
(up to ``PACK_BYTES`` plus one file), and a sealed pack is stored from it as any file is
(``dirformat/encoded.put_file``: the storage's own parts), one upload at a time with the run's
other files.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import zlib
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

import zstandard

from backup import manifest
from backup.config import Config
from backup.dirformat.address import keyed_hash
from backup.dirformat.encoded import put_file, remove
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


@dataclass
class _OpenPack:
    """The pack being filled: a file of the spool, and its address under each target's key
    computed as it grows."""

    path: str
    out: BinaryIO
    macs: dict[bytes, Any]
    size: int = 0


class Packer:
    """Collects the small files of one run into packs and stores each pack on every live
    target; ``add`` from any upload thread, ``flush`` once every file was added. The open pack
    is a file in ``folder`` (the spool), not memory; a sealed pack is stored (holding
    ``storing``, the run's uploads at once) and removed from the spool."""

    def __init__(
        self,
        config: Config,
        targets: list[Target],
        database: str,
        suffix: str,
        tag: bytes,
        folder: str,
        storing: threading.Semaphore | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        # a small file is compressed in its upload thread: zstd workers would cost more than it
        self.codec = replace(config.codec, threads=0)
        self.targets = targets
        self.database = database
        self.suffix = suffix
        self.tag = tag
        self.folder = folder
        self.storing = storing or threading.Semaphore(1)
        self.lock = threading.Lock()
        self.pack: _OpenPack | None = None
        self.members: list[Member] = []
        self.new_bytes = 0
        self.packs = 0
        self.opened = 0
        self.stop = stop or threading.Event()

    def add(self, name: str, path: str, stop: threading.Event) -> int:
        """Encode the file at ``path`` into the open pack; store the pack if it is full.
        Returns the file's plain bytes."""
        if stop.is_set():
            raise Interrupted("the directory-format backup was stopped")
        with open(path, "rb") as source:
            plain_data = source.read()
        plain = len(plain_data)
        data = self._encode(plain_data)
        del plain_data
        sealed = None
        with self.lock:
            pack = self.pack or self._open()
            member = Member(name, plain, pack.size, len(data), hashlib.sha256(data).hexdigest())
            pack.out.write(data)
            for mac in pack.macs.values():
                mac.update(data)
            pack.size += len(data)
            self.members.append(member)
            if pack.size >= PACK_BYTES:
                sealed = self._seal()
        if sealed is not None:
            self._store(*sealed)
        os.unlink(path)
        return plain

    def _open(self) -> _OpenPack:
        self.opened += 1
        path = os.path.join(self.folder, f"pack-{self.opened}")
        macs = {
            t.key: keyed_hash(t.key, _PACK_DOMAIN + self.tag)
            for t in self.targets
            if t.error is None
        }
        self.pack = _OpenPack(path, open(path, "wb"), macs)  # noqa: SIM115 (closed by _seal)
        return self.pack

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

    def discard(self) -> None:
        """The open pack's file closed (the run failed; the spool is removed)."""
        with self.lock:
            if self.pack is not None:
                self.pack.out.close()
                self.pack = None

    def _seal(self) -> tuple[_OpenPack, list[Member]]:
        assert self.pack is not None
        sealed = (self.pack, self.members)
        self.pack.out.close()
        self.pack = None
        self.members = []
        return sealed

    def _store(self, pack: _OpenPack, members: list[Member]) -> None:
        """The pack on every live target, at its own address there; each member named in
        the target's file list once stored."""
        live = [t for t in self.targets if t.error is None and t.key in pack.macs]
        keys = [
            manifest.content_key(self.database, pack.macs[t.key].hexdigest(), self.suffix)
            for t in live
        ]
        destinations = [(t.storage, k) for t, k in zip(live, keys, strict=True)]
        try:
            with self.storing:
                errors = put_file(pack.path, destinations, self.stop)
        finally:
            remove(pack.path)
        for err in errors:
            if isinstance(err, Interrupted) or not isinstance(err, Exception | None):
                raise err  # the run is stopping: not one destination's failure
        for target, key, err in zip(live, keys, errors, strict=True):
            with self.lock:
                if err is not None:
                    if target.error is None:
                        target.error = (
                            err
                            if isinstance(err, BackupError)
                            # a backend's own failure: this destination fails alone
                            else StorageError(f"{target.storage.url}: upload of a pack: {err}")
                        )
                    continue
                target.uploaded.append(key)
                target.packs[key] = pack.size
                target.files.extend(entry(m, key) for m in members)
        with self.lock:
            self.new_bytes += pack.size
            self.packs += 1
        log.debug("stored a pack of %d files, %d bytes", len(members), pack.size)


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
