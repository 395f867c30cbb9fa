"""The age v1 header (https://age-encryption.org/v1): read, parse, build, swap scrypt <-> X25519.

Why. pyrage 1.4 streams only to recipients: its passphrase (scrypt) mode takes whole buffers. In
age the payload depends only on a random 16-byte *file key*; the header is that key wrapped for
each recipient, then an HMAC of the header under the file key. So a passphrase backup is streamed
by rage to a throwaway X25519 identity and ``ScryptHeaderWriter`` swaps the header on its way to
the sink: it unwraps the file key with the throwaway identity and wraps it again in an scrypt
stanza. ``scrypt_to_x25519`` does the reverse before rage decrypts. Only the file key passes
through here; the payload stays in rage.

The cryptography is the ``cryptography`` package (X25519, ChaCha20-Poly1305, HKDF-SHA-256,
scrypt) and ``hmac``. What is written here is format only: the header's lines, unpadded base64,
and bech32 decoding, to get the raw keys out of pyrage's ``age1...`` / ``AGE-SECRET-KEY-1...``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Protocol

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from backup.errors import BackupError, IntegrityError

HEADER_LIMIT_BYTES = 64 * 1024
"""An age header larger than this is refused (ours are a few hundred bytes)."""
# The highest work factor age accepts (maxWorkFactor in
# https://github.com/FiloSottile/age/blob/main/scrypt.go): 2^22, 4 GiB of memory.
SCRYPT_MAX_LOG_N = 22

_VERSION_LINE = b"age-encryption.org/v1"
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_ZERO_NONCE = bytes(12)  # age wraps file keys with a zero nonce: each wrap key is used once
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

Stanza = tuple[list[bytes], bytes]
"""A recipient stanza: its arguments (the first is the type) and its decoded body."""


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# --- reading and parsing ---------------------------------------------------------------------


class Header:
    def __init__(self, stanzas: list[Stanza], mac: bytes, signed: bytes) -> None:
        self.stanzas = stanzas
        self.mac = mac
        self.signed = signed  # the bytes the MAC covers: up to and including "---"


def read_header(source: Readable) -> bytes:
    """Every byte read from ``source`` to get past the header's MAC line (or an armor line)."""
    head = b""
    while not header_end(head):
        if head.startswith(b"-----BEGIN"):
            return head  # ASCII-armored: rage parses it itself
        if len(head) > HEADER_LIMIT_BYTES:
            raise IntegrityError("this is not an age file (no header end in the first 64 KiB)")
        chunk = source.read(4096)
        if not chunk:
            if not head:
                raise IntegrityError("the encrypted backup is empty")
            raise IntegrityError("the encrypted backup is truncated inside its age header")
        head += bytes(chunk)
    return head


class Prefixed:
    """``prefix``, then the rest of ``source``; never more bytes than asked (pyrage requires it)."""

    def __init__(self, prefix: bytes, source: Readable) -> None:
        self._buffer = memoryview(prefix)
        self._source = source

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            out, self._buffer = bytes(self._buffer) + self._source.read(), memoryview(b"")
            return out
        if not self._buffer:
            # pyrage asks for 8 KiB at a time; fewer, larger reads suit network streams.
            self._buffer = memoryview(bytes(self._source.read(max(size, 64 * 1024))))
        out, self._buffer = bytes(self._buffer[:size]), self._buffer[size:]
        return out


def header_end(data: bytes) -> int:
    """The offset just past the MAC line, 0 if ``data`` does not hold it yet."""
    mark = data.find(b"\n--- ")
    if mark < 0:
        return 0
    newline = data.find(b"\n", mark + 1)
    return newline + 1 if newline >= 0 else 0


def parse_header(raw: bytes) -> Header | None:
    """Parse up to the MAC line; ``None`` if it is not a well-formed age v1 header."""
    end = header_end(raw)
    if not end:
        return None
    lines = raw[:end].split(b"\n")[:-1]
    if not lines or lines[0] != _VERSION_LINE:
        return None
    stanzas: list[Stanza] = []
    index = 1
    try:
        while lines[index].startswith(b"-> "):
            args = lines[index][3:].split(b" ")
            index += 1
            body = b""
            while True:  # 64-column lines; the last one is shorter (maybe empty)
                line = lines[index]
                index += 1
                if len(line) > 64:
                    return None
                body += line
                if len(line) < 64:
                    break
            stanzas.append((args, b64decode(body)))
        if index != len(lines) - 1 or not lines[index].startswith(b"--- "):
            return None
        mac = b64decode(lines[index][4:])
    except (IndexError, ValueError):
        return None
    signed = raw[: raw.index(b"\n--- ", 0, end) + 4]
    return Header(stanzas, mac, signed)


def is_scrypt(head: bytes) -> bool:
    """Whether ``head`` (from ``read_header``) is the header of a passphrase-encrypted file."""
    header = parse_header(head)
    return header is not None and bool(header.stanzas) and header.stanzas[0][0][0] == b"scrypt"


def build_header(stanzas: list[Stanza], file_key: bytes) -> bytes:
    lines = [_VERSION_LINE]
    for args, body in stanzas:
        lines.append(b"-> " + b" ".join(args))
        encoded = b64encode(body)
        # 64 columns; the last line is always shorter, so it is empty after a full line.
        lines.extend(encoded[i : i + 64] for i in range(0, len(encoded) + 1, 64))
    signed = b"\n".join(lines) + b"\n---"
    return signed + b" " + b64encode(_header_mac(file_key, signed)) + b"\n"


def _header_mac(file_key: bytes, signed: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, None, b"header"), signed, hashlib.sha256).digest()


def _mac_ok(header: Header, file_key: bytes) -> bool:
    return hmac.compare_digest(_header_mac(file_key, header.signed), header.mac)


# --- scrypt <-> X25519 -----------------------------------------------------------------------


class ScryptHeaderWriter:
    """Between rage and ``sink``: replaces the X25519 stanza for ``recipient`` (a throwaway
    identity made here) with an scrypt stanza for ``passphrase`` at work factor ``2^log_n``.

    The key is derived here, before any thread starts, so a failure (memory) raises at once.
    """

    def __init__(self, sink: Writable, passphrase: str, log_n: int) -> None:
        self.sink = sink
        throwaway = pyrage.x25519.Identity.generate()
        self.recipient = throwaway.to_public()
        self._secret, self._public = _throwaway_keys(throwaway)
        self._salt = secrets.token_bytes(16)
        self._log_n = log_n
        self._wrap_key = _scrypt(passphrase, self._salt, log_n, BackupError)
        self._head: bytes | None = b""

    def write(self, data: bytes) -> None:
        if self._head is None:
            self.sink.write(data)
            return
        self._head += data
        end = header_end(self._head)
        if not end:
            if len(self._head) > HEADER_LIMIT_BYTES:
                raise BackupError("age header from rage never ended")
            return
        header = parse_header(self._head[:end])
        # rage adds random "grease" stanzas; they are dropped, as scrypt must stand alone.
        ours = [s for s in header.stanzas if s[0][0] == b"X25519"] if header else []
        if header is None or len(ours) != 1 or len(ours[0][0]) != 2:
            raise BackupError("unexpected age header from rage")
        args, body = ours[0]
        try:
            share = b64decode(args[1])
            wrap_key = _x25519_wrap_key(self._secret, share, share, self._public)
        except ValueError:
            raise BackupError("unexpected X25519 share in the age header from rage") from None
        file_key = _open(wrap_key, body)
        if file_key is None or not _mac_ok(header, file_key):
            raise BackupError("could not unwrap the age file key from rage's header")
        stanza = [b"scrypt", b64encode(self._salt), str(self._log_n).encode()]
        new_header = build_header([(stanza, _seal(self._wrap_key, file_key))], file_key)
        rest, self._head = self._head[end:], None
        self.sink.write(new_header + rest)

    def finish(self) -> None:
        if self._head is not None:
            raise BackupError("rage finished without writing an age header")


def scrypt_to_x25519(head: bytes, passphrase: str) -> tuple[bytes, object]:
    """``head`` with its scrypt header swapped for one wrapping the same file key for a new
    throwaway X25519 identity, and that identity (a pyrage one, for ``decrypt_io``).

    A wrong passphrase or a damaged header raises ``IntegrityError``, checked as age does.
    """
    header = parse_header(head)
    damaged = IntegrityError("the age header of this backup is damaged (scrypt stanza)")
    if header is None or len(header.stanzas) != 1:
        raise damaged
    file_key = _unwrap_scrypt(header.stanzas[0], passphrase, damaged)
    if not _mac_ok(header, file_key):
        raise IntegrityError("the age header of this backup is damaged (MAC mismatch)")
    identity = pyrage.x25519.Identity.generate()
    _, recipient = _throwaway_keys(identity)
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    wrap_key = _x25519_wrap_key(ephemeral, recipient, share, recipient)
    stanza = [b"X25519", b64encode(share)]
    new_header = build_header([(stanza, _seal(wrap_key, file_key))], file_key)
    return new_header + head[header_end(head) :], identity


def _unwrap_scrypt(stanza: Stanza, passphrase: str, damaged: IntegrityError) -> bytes:
    args, body = stanza
    if len(args) != 3 or len(body) != 32:
        raise damaged
    salt_text, log_n_text = args[1], args[2]
    if not log_n_text.isdigit() or log_n_text.startswith(b"0"):
        raise damaged
    try:
        salt = b64decode(salt_text)
    except ValueError:
        raise damaged from None
    log_n = int(log_n_text)
    if len(salt) != 16:
        raise damaged
    if log_n > SCRYPT_MAX_LOG_N:
        raise IntegrityError(
            f"this backup's scrypt work factor 2^{log_n} is above age's limit 2^{SCRYPT_MAX_LOG_N}",
            "it was not made by this tool or by age -p; decrypt it where it was made",
        )
    file_key = _open(_scrypt(passphrase, salt, log_n, IntegrityError), body)
    if file_key is None:
        raise IntegrityError(
            "BACKUP_AGE_PASSPHRASE does not decrypt this backup",
            "use the passphrase this backup was made with",
        )
    return file_key


def _throwaway_keys(identity: object) -> tuple[X25519PrivateKey, bytes]:
    """The X25519 secret and raw public key of a pyrage identity, cross-checked."""
    secret = X25519PrivateKey.from_private_bytes(bech32_decode(str(identity), "age-secret-key-"))
    public = bech32_decode(str(identity.to_public()), "age")  # type: ignore[attr-defined]
    if secret.public_key().public_bytes_raw() != public:
        raise BackupError("X25519 key check failed: refusing to swap the age header")
    return secret, public


# --- the cryptography package, as age uses it ------------------------------------------------


def _x25519_wrap_key(
    secret: X25519PrivateKey, peer: bytes, share: bytes, recipient: bytes
) -> bytes:
    """age's X25519 wrap key; ``ValueError`` for a bad ``peer`` (wrong size, low order)."""
    shared = secret.exchange(X25519PublicKey.from_public_bytes(peer))
    return _hkdf(shared, share + recipient, _X25519_LABEL)


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _seal(key: bytes, file_key: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)


def _open(key: bytes, sealed: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, sealed, None)
    except InvalidTag:
        return None


def _scrypt(passphrase: str, salt: bytes, log_n: int, error: type[BackupError]) -> bytes:
    """age's scrypt wrap key: ``128 * 8 * 2^log_n`` bytes of memory while it runs."""
    try:
        kdf = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1)
        return kdf.derive(passphrase.encode())
    except MemoryError as err:  # the message never quotes the passphrase
        raise error(
            f"scrypt (work factor 2^{log_n}) needs {(1024 << log_n) >> 20} MiB of memory: {err}",
            "give the job more memory, or use BACKUP_AGE_RECIPIENTS instead of a passphrase",
        ) from err


# --- encodings -------------------------------------------------------------------------------


def b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def b64decode(text: bytes) -> bytes:
    """Canonical unpadded base64 only, as the age spec requires; ``ValueError`` otherwise."""
    if b"=" in text or b"\r" in text:
        raise ValueError("padded base64")
    data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    if b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


def bech32_decode(text: str, hrp: str) -> bytes:
    """The bytes of a bech32 string (BIP 173, no length limit) with prefix ``hrp``."""
    text = text.strip().lower()
    split = text.rfind("1")
    if split < 1 or text[:split] != hrp or len(text) - split < 7:
        raise ValueError(f"not a {hrp} bech32 string")
    values = [_BECH32.index(char) for char in text[split + 1 :]]  # ValueError if not in it
    check = 1
    for value in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values:
        top, check = check >> 25, ((check & 0x1FFFFFF) << 5) ^ value
        for i, generator in enumerate(_BECH32_GENERATORS):
            if (top >> i) & 1:
                check ^= generator
    if check != 1:
        raise ValueError("bad bech32 checksum")
    acc, bits, out = 0, 0, bytearray()
    for value in values[:-6]:  # 5-bit groups to bytes; the last 6 are the checksum
        acc, bits = ((acc << 5) | value) & 0x1FFF, bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        raise ValueError("bad bech32 padding")
    return bytes(out)
