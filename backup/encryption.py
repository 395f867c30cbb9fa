"""age encryption of the backup stream, both directions, through pyrage (rage, the Rust age).

Owns: ``open_encryptor`` (push: ``write``/``close``/``abort``), ``open_decryptor`` (pull:
``read``/``close``), what the manifest records about keys (``recipient_fingerprints``, never keys)
and the early "wrong key" check (``identity_matches``). The output is a standard binary age v1
file: ``age -d -i key.txt X.dump.zst.age`` opens it.

Streaming. ``pyrage.encrypt_io`` / ``decrypt_io`` stream (8 KiB reads, 64 KiB age chunks) but
*pull* from a reader, so each runs in one worker thread fed through a bounded byte pipe
(``PIPE_LIMIT_BYTES``). Memory is that pipe plus rage's own buffers: a few MiB whatever the size of
the stream. A failure on either side breaks the pipe, so the other side raises at once instead of
blocking; the caller sees the first error in ``write`` / ``close`` / ``read``. pyrage ignores an
error from the sink in its final buffer flush, so every sink error is recorded here and re-raised.

Passphrases. pyrage 1.4 has a passphrase (scrypt) mode only for whole buffers. The age format
makes the payload depend on a random 16-byte *file key* only, and the header is just that key
wrapped for each recipient. So pyrage encrypts the stream to a throwaway X25519 key, and this
module swaps the header: it unwraps the file key with the throwaway identity and wraps it again
in an scrypt stanza (and the reverse to decrypt). Only 32-byte values go through the small
primitives at the end of this file (X25519, ChaCha20-Poly1305, HKDF); the payload stays in rage.
The primitives are checked against RFC test vectors and the ``age`` CLI in the unit tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import struct
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Protocol

import pyrage

from backup.config import CodecConfig
from backup.errors import BackupError, ConfigError, IntegrityError

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PIPE_LIMIT_BYTES = 4 * MIB
"""Bytes queued between the caller and the worker thread before the writer blocks."""
READ_CHUNK_BYTES = MIB
HEADER_LIMIT_BYTES = 64 * 1024
"""An age header larger than this is refused (ours are a few hundred bytes)."""
ABORT_JOIN_TIMEOUT_S = 30.0
# age's own work factor for `age -p` (2^18: 256 MiB for a moment at the start of the stream) and
# the highest it accepts (maxWorkFactor): https://github.com/FiloSottile/age/blob/main/scrypt.go
SCRYPT_LOG_N = 18
SCRYPT_MAX_LOG_N = 22

IDENTITY_HINT = "set BACKUP_AGE_IDENTITY or BACKUP_AGE_IDENTITY_FILE"
PASSPHRASE_HINT = "set BACKUP_AGE_PASSPHRASE or BACKUP_AGE_PASSPHRASE_FILE"  # noqa: S105

_VERSION_LINE = b"age-encryption.org/v1"
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# --- public API ------------------------------------------------------------------------------


def open_encryptor(config: CodecConfig, sink: Writable) -> Encryptor:
    """An ``Encryptor`` writing a standard age file into ``sink``.

    Encrypts to every ``config.age_recipients`` (age1... X25519, ssh-ed25519, ssh-rsa) or, if
    there are none, with ``config.age_passphrase`` (scrypt). An invalid recipient raises
    ``ConfigError``. ``close()`` writes the last chunk, then calls ``sink.close()`` if it exists.
    """
    if config.age_recipients:
        return Encryptor(_recipients(config.age_recipients), sink)
    if config.age_passphrase:
        throwaway = pyrage.x25519.Identity.generate()
        salt = secrets.token_bytes(16)
        # Derived here, before the thread starts, so a failure (memory) raises right away.
        wrap_key = _scrypt(config.age_passphrase.reveal(), salt, SCRYPT_LOG_N)
        rewriter = _ScryptHeaderWriter(sink, throwaway, salt, wrap_key)
        return Encryptor([throwaway.to_public()], sink, header=rewriter)
    raise ConfigError("encryption needs BACKUP_AGE_RECIPIENTS or BACKUP_AGE_PASSPHRASE")


def open_decryptor(config: CodecConfig, source: Readable) -> Decryptor:
    """A ``Decryptor`` reading the plain bytes of the age file ``source``.

    Uses ``config.age_identity`` (an age identity file: comments and AGE-SECRET-KEY-1... lines,
    or an unencrypted OpenSSH private key) or ``config.age_passphrase``, as the file's header
    requires. A missing or wrong key, or a damaged or truncated file, raises ``IntegrityError``
    with a hint, here or from ``read``. No message ever contains a key or a passphrase.
    """
    head = _read_header(source)
    header = _parse_header(head)
    if header is not None and header.stanzas and header.stanzas[0][0][0] == b"scrypt":
        if not config.age_passphrase:
            raise IntegrityError(
                "this backup is encrypted with a passphrase and none is set", PASSPHRASE_HINT
            )
        file_key = _unwrap_scrypt(header, config.age_passphrase.reveal())
        new_header, identity = _x25519_header(file_key)
        return Decryptor(_Prefixed(new_header + head[_header_end(head) :], source), [identity])
    if not config.age_identity:
        if config.age_passphrase:
            raise IntegrityError(
                "this backup is encrypted to age recipients, not with a passphrase", IDENTITY_HINT
            )
        raise IntegrityError("this backup is encrypted and no age identity is set", IDENTITY_HINT)
    return Decryptor(_Prefixed(head, source), _identities(config.age_identity.reveal()))


def recipient_fingerprints(config: CodecConfig) -> list[str]:
    """What the manifest records: ``x25519:<hex>``, ``ssh-ed25519:<hex>``, ... or ``scrypt``.

    ``<hex>`` is the first 16 hex digits of the SHA-256 of the public key (ssh comment dropped).
    """
    if not config.age_recipients:
        return ["scrypt"] if config.age_passphrase else []
    return [_fingerprint(recipient) for recipient in config.age_recipients]


def identity_matches(config: CodecConfig, fingerprints: list[str]) -> bool | None:
    """Whether ``config.age_identity`` can open a backup made for ``fingerprints``.

    ``None`` when it cannot be told without decrypting: no identity, a passphrase backup, a key
    whose public half is not derivable here (PEM RSA) or an identity that does not parse.
    """
    if not config.age_identity or not fingerprints or "scrypt" in fingerprints:
        return None
    try:
        ours = _identity_fingerprints(config.age_identity.reveal())
    except IntegrityError:
        return None
    if any(fp in fingerprints for fp in ours if fp):
        return True
    return None if None in ours else False


# --- the worker threads and the pipe between them ---------------------------------------------


class _PipeBroken(Exception):
    """The other end of a ``_Pipe`` failed or was aborted."""


class _Aborted(Exception):
    """The caller gave up on the stream."""


class _Pipe:
    """A bounded byte queue between two threads; either side can break it to wake the other."""

    def __init__(self, limit_bytes: int) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[memoryview] = deque()
        self._size = 0
        self._limit = limit_bytes
        self._eof = False
        self.error: BaseException | None = None

    def put(self, data: bytes) -> None:
        if not data:
            return  # an empty read means end of stream to the reader: never queue one
        with self._cond:
            while self._size >= self._limit and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise _PipeBroken from self.error
            self._chunks.append(memoryview(data))
            self._size += len(data)
            self._cond.notify_all()

    def get(self, size: int) -> bytes:
        with self._cond:
            while not self._chunks and not self._eof and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise _PipeBroken from self.error
            if not self._chunks:
                return b""
            head = self._chunks[0]
            piece = bytes(head[:size])
            if len(piece) == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[size:]
            self._size -= len(piece)
            self._cond.notify_all()
            return piece

    def finish(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def break_(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()


class _Recorder:
    """Wraps a file-like end given to pyrage and remembers the first exception it raised.

    pyrage turns those exceptions into strings, or drops them in its final flush.
    """

    def __init__(self, target: object) -> None:
        self.target = target
        self.error: BaseException | None = None

    def read(self, size: int) -> bytes:
        try:
            data = self.target.read(size)  # type: ignore[attr-defined]
        except BaseException as err:
            self.error = self.error or err
            raise
        return bytes(data)

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        try:
            self.target.write(data)  # type: ignore[attr-defined]
        except BaseException as err:
            self.error = err
            raise
        return len(data)

    def flush(self) -> None:
        """Nothing: the sink is flushed and closed by ``Encryptor.close``."""


class _PipeEnd:
    """The worker's view of a ``_Pipe``: a file-like reader or writer."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe

    def read(self, size: int) -> bytes:
        return self.pipe.get(size)

    def write(self, data: bytes) -> int:
        self.pipe.put(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: ``put`` hands every byte over at once."""


class _Outcome:
    """How a worker ended: its first error and where it came from."""

    error: BaseException | None = None
    origin: str = ""  # "source", "sink" or "age"

    def record(self, error: BaseException, source: _Recorder, sink: _Recorder) -> BaseException:
        if source.error is not None:
            self.error, self.origin = source.error, "source"
        elif sink.error is not None:
            self.error, self.origin = sink.error, "sink"
        else:
            self.error, self.origin = error, "age"
        return self.error


def _encrypt_worker(
    pipe: _Pipe,
    output: _Recorder,
    recipients: list[object],
    outcome: _Outcome,
    finish: Callable[[], None] | None,
) -> None:
    # Module-level (not a method) so the thread holds no reference to the Encryptor: if the caller
    # drops it without close() or abort(), its finalizer breaks the pipe and this thread ends.
    source = _Recorder(_PipeEnd(pipe))
    try:
        pyrage.encrypt_io(source, output, recipients)
        if output.error is not None:
            raise output.error
        if finish is not None:
            finish()
    except BaseException as err:
        pipe.break_(outcome.record(err, source, output))


class Encryptor:
    """Push side: ``write(bytes)`` then ``close()``; ``abort()`` (or an exception inside a ``with``
    block) stops the worker thread and leaves ``sink`` unclosed, so nothing is committed.

    ``write`` blocks when ``PIPE_LIMIT_BYTES`` are queued (backpressure from the sink). An error
    from the sink or from rage is raised by the next ``write`` or by ``close``.
    """

    def __init__(
        self, recipients: list[object], sink: Writable, header: _ScryptHeaderWriter | None = None
    ) -> None:
        self._sink = sink
        self._pipe = _Pipe(PIPE_LIMIT_BYTES)
        self._outcome = _Outcome()
        self._done = False
        output = _Recorder(header or sink)
        finish = header.finish if header else None
        self._thread = threading.Thread(
            target=_encrypt_worker,
            args=(self._pipe, output, recipients, self._outcome, finish),
            name="age-encrypt",
            daemon=True,
        )
        self._thread.start()
        weakref.finalize(self, self._pipe.break_, _Aborted("the encryptor was dropped"))

    def write(self, data: bytes) -> int:
        if self._done:
            raise ValueError("write to a closed or aborted age encryptor")
        try:
            self._pipe.put(bytes(data))
        except _PipeBroken:
            self._thread.join()
            self._done = True
            raise self._failure() from None
        return len(data)

    def close(self) -> None:
        """Finish the age file, wait for the worker, then close ``sink``; raise the first error."""
        if self._done:
            return
        self._done = True
        self._pipe.finish()
        self._thread.join()
        if self._outcome.error is not None:
            raise self._failure()
        close = getattr(self._sink, "close", None)
        if close:
            close()

    def abort(self) -> None:
        """Stop the worker without finishing the file; never raises, never closes ``sink``."""
        self._done = True
        self._pipe.break_(_Aborted("the backup was aborted"))
        self._thread.join(ABORT_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("the age encryption thread is still blocked in the sink after abort")

    def __enter__(self) -> Encryptor:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _failure(self) -> BaseException:
        if self._outcome.origin == "sink":
            return self._outcome.error  # type: ignore[return-value]  # the storage error, as is
        return BackupError(f"age encryption failed: {self._outcome.error}")


def _decrypt_worker(
    source: _Recorder, pipe: _Pipe, identities: list[object], outcome: _Outcome
) -> None:
    output = _Recorder(_PipeEnd(pipe))
    try:
        pyrage.decrypt_io(source, output, identities)
        if output.error is not None:
            raise output.error
        pipe.finish()
    except BaseException as err:
        pipe.break_(outcome.record(err, source, output))


class Decryptor:
    """Pull side: ``read(n)`` returns up to ``n`` plain bytes, ``b""`` at the authenticated end.

    Each 64 KiB age chunk is authenticated before its bytes are returned; a truncated file raises
    ``IntegrityError`` at the end. ``close()`` stops the worker early (also done when dropped).
    """

    def __init__(self, source: Readable, identities: list[object]) -> None:
        self._pipe = _Pipe(PIPE_LIMIT_BYTES)
        self._outcome = _Outcome()
        self._closed = False
        self._thread = threading.Thread(
            target=_decrypt_worker,
            args=(_Recorder(source), self._pipe, identities, self._outcome),
            name="age-decrypt",
            daemon=True,
        )
        self._thread.start()
        weakref.finalize(self, self._pipe.break_, _Aborted("the decryptor was dropped"))

    def read(self, size: int = -1) -> bytes:
        if self._closed:
            raise ValueError("read from a closed age decryptor")
        if size == 0:
            return b""
        try:
            data = self._pipe.get(READ_CHUNK_BYTES if size is None or size < 0 else size)
        except _PipeBroken:
            self._thread.join()
            raise self._failure() from None
        if not data:
            self._thread.join()
        return data

    def close(self) -> None:
        self._closed = True
        self._pipe.break_(_Aborted("the restore stopped reading"))
        self._thread.join(ABORT_JOIN_TIMEOUT_S)

    def __enter__(self) -> Decryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failure(self) -> BaseException:
        error = self._outcome.error
        if self._outcome.origin == "source":
            return error  # type: ignore[return-value]  # a storage error or checksum mismatch
        if "no matching keys" in str(error).lower():
            return IntegrityError(
                "no key in BACKUP_AGE_IDENTITY can decrypt this backup",
                "use the private key matching a recipient of this backup; " + IDENTITY_HINT,
            )
        return IntegrityError(f"the encrypted backup is damaged or truncated (age: {error})")


class _Prefixed:
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


# --- keys ------------------------------------------------------------------------------------


def _recipients(recipients: tuple[str, ...]) -> list[object]:
    parsed: list[object] = []
    for recipient in recipients:
        module = pyrage.ssh if recipient.startswith("ssh-") else pyrage.x25519
        try:
            parsed.append(module.Recipient.from_str(recipient))
        except Exception as err:  # pyrage.RecipientError, or ValueError for bad encodings
            raise ConfigError(
                f"BACKUP_AGE_RECIPIENTS: {recipient[:16]}... is not a valid age or ssh public key",
                "use the line 'Public key: age1...' printed by age-keygen, or an ssh .pub line",
            ) from err
    return parsed


def _identities(text: str) -> list[object]:
    """Every identity in an age identity file, or the one unencrypted OpenSSH/PEM key."""
    if "-----BEGIN" in text:
        try:
            return [pyrage.ssh.Identity.from_buffer(text.encode())]
        except Exception:
            raise IntegrityError(
                "BACKUP_AGE_IDENTITY holds an ssh private key that cannot be used "
                "(passphrase-protected ssh keys are not supported)",
                "decrypt the key first (ssh-keygen -p -N '' -f KEY) or use an age identity; "
                + IDENTITY_HINT,
            ) from None
    identities: list[object] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            # from None: pyrage's message could quote the line, which is a secret.
            raise IntegrityError(
                f"BACKUP_AGE_IDENTITY line {number} is not an age identity (AGE-SECRET-KEY-1...)",
                "use the file written by age-keygen; " + IDENTITY_HINT,
            ) from None
    if not identities:
        raise IntegrityError("BACKUP_AGE_IDENTITY holds no age identity", IDENTITY_HINT)
    return identities


def _fingerprint(recipient: str) -> str:
    recipient = recipient.strip()
    if recipient.startswith("ssh-"):
        kind, key = recipient.split()[:2]
        canonical = f"{kind} {key}"  # the comment is not part of the key
    else:
        kind, canonical = "x25519", recipient.lower()
    return f"{kind}:{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def _identity_fingerprints(text: str) -> list[str | None]:
    """The fingerprint of each identity's public key; ``None`` where it cannot be derived."""
    if "-----BEGIN OPENSSH PRIVATE KEY-----" in text:
        return [_openssh_public_fingerprint(text)]
    if "-----BEGIN" in text:
        return [None]
    identities = _identities(text)
    return [_fingerprint(str(identity.to_public())) for identity in identities]  # type: ignore[attr-defined]


def _openssh_public_fingerprint(text: str) -> str | None:
    """The public key stored in clear at the start of an ``openssh-key-v1`` private key."""
    magic = b"openssh-key-v1\0"
    try:
        blob = base64.b64decode("".join(text.strip().splitlines()[1:-1]))
        if not blob.startswith(magic):
            return None
        offset = len(magic)
        for _ in range(3):  # cipher name, kdf name, kdf options
            (length,) = struct.unpack_from(">I", blob, offset)
            offset += 4 + length
        offset += 4  # number of keys
        (length,) = struct.unpack_from(">I", blob, offset)
        public = blob[offset + 4 : offset + 4 + length]
        (kind_length,) = struct.unpack_from(">I", public, 0)
        kind = public[4 : 4 + kind_length].decode("ascii")
    except (ValueError, struct.error):
        return None
    return _fingerprint(f"{kind} {base64.b64encode(public).decode()}")


# --- the age header: read, parse, and swap scrypt <-> X25519 -----------------------------------


class _Header:
    def __init__(self, stanzas: list[tuple[list[bytes], bytes]], mac: bytes, signed: bytes) -> None:
        self.stanzas = stanzas
        self.mac = mac
        self.signed = signed  # the bytes the MAC covers: up to and including "---"


def _read_header(source: Readable) -> bytes:
    """Every byte read from ``source`` to get past the header's MAC line (or an armor line)."""
    head = b""
    while not _header_end(head):
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


def _header_end(data: bytes) -> int:
    mark = data.find(b"\n--- ")
    if mark < 0:
        return 0
    newline = data.find(b"\n", mark + 1)
    return newline + 1 if newline >= 0 else 0


def _parse_header(raw: bytes) -> _Header | None:
    """Parse up to the MAC line; ``None`` if it is not a well-formed age v1 header."""
    end = _header_end(raw)
    if not end:
        return None
    lines = raw[:end].split(b"\n")[:-1]
    if not lines or lines[0] != _VERSION_LINE:
        return None
    stanzas: list[tuple[list[bytes], bytes]] = []
    index = 1
    try:
        while lines[index].startswith(b"-> "):
            args = lines[index][3:].split(b" ")
            index += 1
            body = b""
            while True:
                line = lines[index]
                index += 1
                if len(line) > 64:
                    return None
                body += line
                if len(line) < 64:
                    break
            stanzas.append((args, _b64decode(body)))
        if index != len(lines) - 1 or not lines[index].startswith(b"--- "):
            return None
        mac = _b64decode(lines[index][4:])
    except (IndexError, ValueError):
        return None
    signed = raw[: raw.index(b"\n--- ", 0, end) + 4]
    return _Header(stanzas, mac, signed)


def _build_header(stanzas: list[tuple[list[bytes], bytes]], file_key: bytes) -> bytes:
    lines = [_VERSION_LINE]
    for args, body in stanzas:
        lines.append(b"-> " + b" ".join(args))
        encoded = _b64encode(body)
        # 64 columns; the last line is always shorter, so it is empty after a full line.
        lines.extend(encoded[i : i + 64] for i in range(0, len(encoded) + 1, 64))
    signed = b"\n".join(lines) + b"\n---"
    return signed + b" " + _b64encode(_header_mac(file_key, signed)) + b"\n"


def _header_mac(file_key: bytes, signed: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), signed, hashlib.sha256).digest()


class _ScryptHeaderWriter:
    """Between rage and the sink: replaces the throwaway X25519 stanza with an scrypt stanza."""

    def __init__(self, sink: Writable, throwaway: object, salt: bytes, wrap_key: bytes) -> None:
        self.sink = sink
        self._secret, self._public = _throwaway_keys(throwaway)
        self._salt = salt
        self._wrap_key = wrap_key
        self._head: bytes | None = b""

    def write(self, data: bytes) -> None:
        if self._head is None:
            self.sink.write(data)
            return
        self._head += data
        end = _header_end(self._head)
        if not end:
            if len(self._head) > HEADER_LIMIT_BYTES:
                raise BackupError("age header from rage never ended")
            return
        header = _parse_header(self._head[:end])
        # rage adds random "grease" stanzas; they are dropped, as scrypt must stand alone.
        ours = [s for s in header.stanzas if s[0][0] == b"X25519"] if header else []
        if header is None or len(ours) != 1 or len(ours[0][0]) != 2:
            raise BackupError("unexpected age header from rage")
        args, body = ours[0]
        share = _b64decode(args[1])
        wrap_key = _hkdf(_x25519(self._secret, share), share + self._public, _X25519_LABEL)
        file_key = _chacha_open(wrap_key, body)
        if file_key is None or not hmac.compare_digest(
            _header_mac(file_key, header.signed), header.mac
        ):
            raise BackupError("could not unwrap the age file key from rage's header")
        stanza = [b"scrypt", _b64encode(self._salt), str(SCRYPT_LOG_N).encode()]
        new_header = _build_header([(stanza, _chacha_seal(self._wrap_key, file_key))], file_key)
        rest, self._head = self._head[end:], None
        self.sink.write(new_header + rest)

    def finish(self) -> None:
        if self._head is not None:
            raise BackupError("rage finished without writing an age header")


def _throwaway_keys(identity: object) -> tuple[bytes, bytes]:
    """The raw X25519 secret and public key of a pyrage identity, cross-checked."""
    secret = _bech32_decode(str(identity), "age-secret-key-")
    public = _bech32_decode(str(identity.to_public()), "age")  # type: ignore[attr-defined]
    if _x25519(secret, _BASE_POINT) != public:
        raise BackupError("X25519 self-check failed: refusing to write a passphrase backup")
    return secret, public


def _x25519_header(file_key: bytes) -> tuple[bytes, object]:
    """A header wrapping ``file_key`` for a new throwaway identity, and that identity."""
    identity = pyrage.x25519.Identity.generate()
    _, recipient = _throwaway_keys(identity)
    ephemeral = secrets.token_bytes(32)
    share = _x25519(ephemeral, _BASE_POINT)
    wrap_key = _hkdf(_x25519(ephemeral, recipient), share + recipient, _X25519_LABEL)
    stanza = [b"X25519", _b64encode(share)]
    return _build_header([(stanza, _chacha_seal(wrap_key, file_key))], file_key), identity


def _unwrap_scrypt(header: _Header, passphrase: str) -> bytes:
    """The file key from an scrypt header, checked as age does; ``IntegrityError`` otherwise."""
    args, body = header.stanzas[0]
    damaged = IntegrityError("the age header of this backup is damaged (scrypt stanza)")
    if len(header.stanzas) != 1 or len(args) != 3 or len(body) != 32:
        raise damaged
    salt_text, log_n_text = args[1], args[2]
    if not log_n_text.isdigit() or log_n_text.startswith(b"0"):
        raise damaged
    try:
        salt = _b64decode(salt_text)
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
    file_key = _chacha_open(_scrypt(passphrase, salt, log_n, IntegrityError), body)
    if file_key is None:
        raise IntegrityError(
            "BACKUP_AGE_PASSPHRASE does not decrypt this backup",
            "use the passphrase this backup was made with",
        )
    if not hmac.compare_digest(_header_mac(file_key, header.signed), header.mac):
        raise IntegrityError("the age header of this backup is damaged (MAC mismatch)")
    return file_key


def _scrypt(
    passphrase: str, salt: bytes, log_n: int, error: type[BackupError] = BackupError
) -> bytes:
    """The 32-byte wrap key; ``128 * r * 2^log_n`` bytes of memory while it runs."""
    n = 1 << log_n
    try:
        return hashlib.scrypt(
            passphrase.encode(),
            salt=_SCRYPT_LABEL + salt,
            n=n,
            r=8,
            p=1,
            maxmem=256 * 8 * n,
            dklen=32,
        )
    except (ValueError, MemoryError) as err:  # OpenSSL's messages never quote the passphrase
        raise error(
            f"scrypt (work factor 2^{log_n}) needs {(1024 * n) >> 20} MiB of memory: {err}",
            "give the job more memory, or use BACKUP_AGE_RECIPIENTS instead of a passphrase",
        ) from err


def _b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text: bytes) -> bytes:
    """Canonical unpadded base64 only, as the age spec requires."""
    if b"=" in text or b"\r" in text:
        raise ValueError("padded base64")
    data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    if _b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


# --- primitives for 32-byte values (RFC 7748, RFC 8439, RFC 5869, BIP 173) ----------------------

_P25519 = 2**255 - 19
_BASE_POINT = (9).to_bytes(32, "little")
_MASK32 = 0xFFFFFFFF
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _x25519(scalar: bytes, u_bytes: bytes) -> bytes:
    k = bytearray(scalar)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    n = int.from_bytes(k, "little")
    x1 = (int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)) % _P25519
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (n >> t) & 1
        if swap ^ bit:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = x2 + z2, x2 - z2
        aa, bb = a * a % _P25519, b * b % _P25519
        e = aa - bb
        c, d = x3 + z3, x3 - z3
        da, cb = d * a % _P25519, c * b % _P25519
        x3, z3 = (da + cb) ** 2 % _P25519, x1 * (da - cb) ** 2 % _P25519
        x2, z2 = aa * bb % _P25519, e * (aa + 121665 * e) % _P25519
    if swap:
        x2, z2 = x3, z3
    shared = (x2 * pow(z2, _P25519 - 2, _P25519) % _P25519).to_bytes(32, "little")
    if shared == bytes(32):
        raise IntegrityError("the age header holds an invalid X25519 share")
    return shared


def _chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state += [*struct.unpack("<8I", key), counter, *struct.unpack("<3I", nonce)]
    w = list(state)

    def quarter(a: int, b: int, c: int, d: int) -> None:
        for x, y, z, shift in ((a, b, d, 16), (c, d, b, 12), (a, b, d, 8), (c, d, b, 7)):
            w[x] = (w[x] + w[y]) & _MASK32
            v = w[z] ^ w[x]
            w[z] = ((v << shift) | (v >> (32 - shift))) & _MASK32

    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15)):
            quarter(a, b, c, d)
        for a, b, c, d in ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            quarter(a, b, c, d)
    return struct.pack("<16I", *((x + y) & _MASK32 for x, y in zip(w, state, strict=True)))


def _chacha20_xor(key: bytes, nonce: bytes, data: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(data), 64):
        block = _chacha20_block(key, 1 + i // 64, nonce)
        out += bytes(x ^ y for x, y in zip(data[i : i + 64], block, strict=False))
    return bytes(out)


def _poly1305_tag(key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    one_time = _chacha20_block(key, 0, nonce)[:32]
    r = int.from_bytes(one_time[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(one_time[16:], "little")

    def pad(data: bytes) -> bytes:
        return data + bytes(-len(data) % 16)

    message = pad(aad) + pad(ciphertext) + struct.pack("<QQ", len(aad), len(ciphertext))
    acc, p = 0, (1 << 130) - 5
    for i in range(0, len(message), 16):
        acc = (acc + int.from_bytes(message[i : i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _chacha_seal(key: bytes, plaintext: bytes, nonce: bytes = bytes(12), aad: bytes = b"") -> bytes:
    """ChaCha20-Poly1305; age wraps file keys with a zero nonce (each wrap key is used once)."""
    ciphertext = _chacha20_xor(key, nonce, plaintext)
    return ciphertext + _poly1305_tag(key, nonce, aad, ciphertext)


def _chacha_open(
    key: bytes, sealed: bytes, nonce: bytes = bytes(12), aad: bytes = b""
) -> bytes | None:
    if len(sealed) < 16:
        return None
    ciphertext, tag = sealed[:-16], sealed[-16:]
    if not hmac.compare_digest(_poly1305_tag(key, nonce, aad, ciphertext), tag):
        return None
    return _chacha20_xor(key, nonce, ciphertext)


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA-256 with a 32-byte output."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def _bech32_decode(text: str, hrp: str) -> bytes:
    text = text.strip().lower()
    split = text.rfind("1")
    if text[:split] != hrp or len(text) - split < 7:
        raise ValueError(f"not a {hrp} bech32 string")
    values = [_BECH32.index(char) for char in text[split + 1 :]]
    check = 1
    for value in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values:
        top, check = check >> 25, ((check & 0x1FFFFFF) << 5) ^ value
        for i, generator in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            if (top >> i) & 1:
                check ^= generator
    if check != 1:
        raise ValueError("bad bech32 checksum")
    acc, bits, out = 0, 0, bytearray()
    for value in values[:-6]:
        acc, bits = ((acc << 5) | value) & 0x1FFF, bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        raise ValueError("bad bech32 padding")
    return bytes(out)
