"""Content addresses of a directory-format backup's files: HMAC-SHA256 of the plain file, keyed
by a secret of the destination, over a tag of the encoding, so that

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
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import secrets
from collections.abc import Iterable

from backup.config import CodecConfig, DumpConfig
from backup.errors import IntegrityError, ObjectNotFound
from backup.manifest import dedup_key_key
from backup.storage import Storage

log = logging.getLogger(__name__)

_KEY_DOMAIN = b"pgbackup-job directory-format content address key v1\0"
KEY_BYTES = 32
READ_BYTES = 1024 * 1024


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
    """The HMAC key of ``database``'s content addresses on ``storage`` (see the module)."""
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
    macs = {key: hmac.new(key, tag, "sha256") for key in set(keys)}
    size = 0
    with open(path, "rb") as source:
        while chunk := source.read(READ_BYTES):
            size += len(chunk)
            for mac in macs.values():
                mac.update(chunk)
    return {key: mac.hexdigest() for key, mac in macs.items()}, size
