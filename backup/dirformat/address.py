"""Content addresses of a directory-format backup's files: a keyed hash of the plain file (BLAKE3
in keyed mode; HMAC-SHA256 before), keyed by a secret of the destination, over a tag of the
encoding, so that

- an object's name says nothing about what it holds to whoever can only list or read the
  bucket (without the key nobody can test "does this table hold exactly these bytes");
- an object encoded otherwise (another compression, other age recipients, another passphrase)
  is never reused: a restore with the new key must open every file of the new backup.

Where the key comes from (``address_key``):

- ``BACKUP_DEDUP_KEY`` when set (required with ``BACKUP_AGE_RECIPIENTS``: the backup holds no
  private key, so it could not read a key kept encrypted in the destination, and a key kept
  plain there would defeat the encryption's purpose);
- with ``BACKUP_AGE_PASSPHRASE``, derived from the passphrase (a secret the backup holds);
- without encryption, 32 random bytes kept in the destination (``<database>/_dedup.key``),
  made on first use: whoever reads the bucket reads the data anyway.

Restore never needs the key: a manifest names each file's object.

The keyed hash: BLAKE3's keyed mode (``ADDRESS_HASH``), 2.5x as fast as HMAC-SHA256 here
(``bench/keyed_hash.py``), under a key derived from the address key (BLAKE3's derive-key mode,
so no key is ever used by both functions). Jobs before it used HMAC-SHA256; a manifest records
which (``Manifest.address_hash``), and an object is reused only by a backup whose addresses use
the same hash (``dump/reuse.prepare``): an address is never matched under the wrong hash.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import secrets
from collections.abc import Iterable
from typing import Protocol

from backup.config import CodecConfig, DumpConfig
from backup.errors import IntegrityError, ObjectNotFound
from backup.manifest import LEGACY_ADDRESS_HASH, dedup_key_key
from backup.storage import Storage

log = logging.getLogger(__name__)

_KEY_DOMAIN = b"pgbackup-job directory-format content address key v1\0"
_BLAKE3_CONTEXT = "pgbackup-job 2026-12 directory-format content address, BLAKE3 keyed mode"
BLAKE3 = "blake3"
HMAC_SHA256 = LEGACY_ADDRESS_HASH
ADDRESS_HASH = BLAKE3
"""The keyed hash this job names content objects with (recorded in the manifest)."""


class KeyedHash(Protocol):
    def update(self, data: bytes, /) -> object: ...

    def hexdigest(self) -> str: ...


def keyed_hash(key: bytes, tag: bytes, algorithm: str = ADDRESS_HASH) -> KeyedHash:
    """A hasher of addresses under the address key ``key``, fed ``tag`` first."""
    if algorithm == BLAKE3:
        import blake3  # the directory format's only: a custom-format run never loads it

        derived = blake3.blake3(key, derive_key_context=_BLAKE3_CONTEXT).digest()
        return blake3.blake3(tag, key=derived)
    if algorithm == HMAC_SHA256:
        return hmac.new(key, tag, "sha256")
    raise ValueError(f"no keyed hash {algorithm!r}")


KEY_BYTES = 32
READ_BYTES = 256 * 1024


def encoding_tag(codec: CodecConfig) -> bytes:
    """What a stored object's bytes depend on besides the file: its compression and who can
    decrypt it (the compression level changes the bytes, never what a restore needs)."""
    if codec.age_recipients:
        who = "age:" + ",".join(sorted(codec.age_recipients))
    elif codec.age_passphrase is not None:
        digest = hashlib.sha256(codec.age_passphrase.reveal().encode()).hexdigest()
        who = f"scrypt:{digest}"
    else:
        who = "plain"
    return f"{codec.compression}\0{who}\0".encode()


def address_key(storage: Storage, database: str, dump: DumpConfig, codec: CodecConfig) -> bytes:
    """The key of ``database``'s content addresses on ``storage`` (see the module)."""
    if dump.dedup_key is not None:
        return hashlib.sha256(_KEY_DOMAIN + dump.dedup_key.reveal().encode()).digest()
    if codec.age_passphrase is not None:
        return hmac.new(codec.age_passphrase.reveal().encode(), _KEY_DOMAIN, "sha256").digest()
    if codec.encrypted:  # refused by the configuration; never a key anyone may read
        raise IntegrityError("BACKUP_DEDUP_KEY is required to address encrypted files")
    return _stored_key(storage, database)


def _stored_key(storage: Storage, database: str) -> bytes:
    key = dedup_key_key(database)
    try:
        with storage.open(key) as stream:
            text = stream.read(4 * KEY_BYTES).decode("ascii", "replace").strip()
    except ObjectNotFound:
        text = secrets.token_hex(KEY_BYTES)
        storage.put(key, io.BytesIO(text.encode("ascii") + b"\n"))
        log.info("made the content address key %s on %s", key, storage.url)
        return bytes.fromhex(text)
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != KEY_BYTES:
        raise IntegrityError(
            f"{storage.url}: {key} is not a key of {KEY_BYTES} bytes in hex",
            hint="it was damaged or edited: delete it (the next backup makes a new one and "
            "stores every file again)",
        )
    return value


def file_addresses(path: str, keys: Iterable[bytes], tag: bytes) -> tuple[dict[bytes, str], int]:
    """The content address of the file at ``path`` under each key, and its size: one read."""
    macs = {key: keyed_hash(key, tag) for key in set(keys)}
    size = 0
    buffer = bytearray(READ_BYTES)  # one buffer, read into: no new 1 MiB object per read
    view = memoryview(buffer)
    with open(path, "rb") as source:
        while count := source.readinto(buffer):
            size += count
            for mac in macs.values():
                mac.update(view[:count])
    return {key: mac.hexdigest() for key, mac in macs.items()}, size
