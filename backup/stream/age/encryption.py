"""age encryption of the backup stream, both directions, through pyrage (rage, the Rust age).

Owns: ``open_encryptor`` (push: ``write``/``close``/``abort``), ``open_decryptor`` (pull:
``read``/``close``), what the manifest records about keys (``recipient_fingerprints``, never keys)
and the early "wrong key" check (``identity_matches``). The output is a standard binary age v1
file: ``age -d -i key.txt X.dump.zst.age`` opens it.

Streaming. ``pyrage.encrypt_io`` / ``decrypt_io`` stream (8 KiB reads, 64 KiB age chunks) but
*pull* from a reader, so each runs in one worker thread fed through a bounded byte pipe
(``PIPE_LIMIT_BYTES``); the threads, the pipe and the error bookkeeping are in ``pipe.py``.
Memory is that pipe plus rage's own buffers: a few MiB whatever the size of the stream. A failure
on either side breaks the pipe, so the other side raises at once instead of blocking; the caller
sees the first error in ``write`` / ``close`` / ``read``. pyrage ignores an error from the sink in
its final buffer flush, so every sink error is recorded (``pipe.Recorder``) and re-raised.

Passphrases. pyrage 1.4 has no streaming passphrase (scrypt) mode, so rage streams to a throwaway
X25519 key and ``header.py`` swaps the age header for an scrypt one (and back to decrypt).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from backup.config import CodecConfig, age_keys
from backup.config.age_keys import IDENTITY_HINT
from backup.errors import BackupError, ConfigError, IntegrityError
from backup.stream.age import header as age_header
from backup.stream.age.header import Prefixed, Readable, ScryptHeaderWriter, Writable
from backup.stream.age.pipe import (
    Aborted,
    Outcome,
    Pipe,
    PipeBroken,
    Recorder,
    decrypt_worker,
    encrypt_worker,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PIPE_LIMIT_BYTES = 4 * MIB
"""Bytes queued between the caller and the worker thread before the writer blocks."""
READ_CHUNK_BYTES = MIB
ABORT_JOIN_TIMEOUT_S = 30.0
# age's own work factor for `age -p` (2^18: 256 MiB for a moment at the start of the stream):
# https://github.com/FiloSottile/age/blob/main/scrypt.go
SCRYPT_LOG_N = 18

PASSPHRASE_HINT = "set BACKUP_AGE_PASSPHRASE or BACKUP_AGE_PASSPHRASE_FILE"  # noqa: S105


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
        passphrase = config.age_passphrase.reveal()
        rewriter = ScryptHeaderWriter(sink, passphrase, SCRYPT_LOG_N)
        return Encryptor([rewriter.recipient], sink, header=rewriter)
    raise ConfigError("encryption needs BACKUP_AGE_RECIPIENTS or BACKUP_AGE_PASSPHRASE")


def open_decryptor(config: CodecConfig, source: Readable) -> Decryptor:
    """A ``Decryptor`` reading the plain bytes of the age file ``source``.

    Uses ``config.age_identity`` (an age identity file: comments and AGE-SECRET-KEY-1... lines,
    or an unencrypted OpenSSH private key) or ``config.age_passphrase``, as the file's header
    requires. A missing or wrong key, or a damaged or truncated file, raises ``IntegrityError``
    with a hint, here or from ``read``. No message ever contains a key or a passphrase.
    """
    head = age_header.read_header(source)
    if age_header.is_scrypt(head):
        if not config.age_passphrase:
            raise IntegrityError(
                "this backup is encrypted with a passphrase and none is set", PASSPHRASE_HINT
            )
        head, identity = age_header.scrypt_to_x25519(head, config.age_passphrase.reveal())
        return Decryptor(Prefixed(head, source), [identity])
    if not config.age_identity:
        if config.age_passphrase:
            raise IntegrityError(
                "this backup is encrypted to age recipients, not with a passphrase", IDENTITY_HINT
            )
        raise IntegrityError("this backup is encrypted and no age identity is set", IDENTITY_HINT)
    return Decryptor(Prefixed(head, source), _identities(config.age_identity.reveal()))


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


# --- the push and pull sides ------------------------------------------------------------------


class Encryptor:
    """Push side: ``write(bytes)`` then ``close()``; ``abort()`` (or an exception inside a ``with``
    block) stops the worker thread and leaves ``sink`` unclosed, so nothing is committed.

    ``write`` blocks when ``PIPE_LIMIT_BYTES`` are queued (backpressure from the sink). An error
    from the sink or from rage is raised by the next ``write`` or by ``close``.
    """

    def __init__(
        self, recipients: list[object], sink: Writable, header: ScryptHeaderWriter | None = None
    ) -> None:
        self._sink = sink
        self._pipe = Pipe(PIPE_LIMIT_BYTES)
        self._outcome = Outcome()
        self._done = False
        output = Recorder(header or sink)
        finish = header.finish if header else None
        self._thread = threading.Thread(
            target=encrypt_worker,
            args=(self._pipe, output, recipients, self._outcome, finish),
            name="age-encrypt",
            daemon=True,
        )
        self._thread.start()
        weakref.finalize(self, self._pipe.break_, Aborted("the encryptor was dropped"))

    def write(self, data: bytes) -> int:
        if self._done:
            raise ValueError("write to a closed or aborted age encryptor")
        try:
            self._pipe.write(bytes(data))
        except PipeBroken:
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
        self._pipe.break_(Aborted("the backup was aborted"))
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


class Decryptor:
    """Pull side: ``read(n)`` returns up to ``n`` plain bytes, ``b""`` at the authenticated end.

    Each 64 KiB age chunk is authenticated before its bytes are returned; a truncated file raises
    ``IntegrityError`` at the end. ``close()`` stops the worker early (also done when dropped).
    """

    def __init__(self, source: Readable, identities: list[object]) -> None:
        self._pipe = Pipe(PIPE_LIMIT_BYTES)
        self._outcome = Outcome()
        self._closed = False
        self._thread = threading.Thread(
            target=decrypt_worker,
            args=(Recorder(source), self._pipe, identities, self._outcome),
            name="age-decrypt",
            daemon=True,
        )
        self._thread.start()
        weakref.finalize(self, self._pipe.break_, Aborted("the decryptor was dropped"))

    def read(self, size: int = -1) -> bytes:
        if self._closed:
            raise ValueError("read from a closed age decryptor")
        if size == 0:
            return b""
        try:
            data = self._pipe.read(READ_CHUNK_BYTES if size is None or size < 0 else size)
        except PipeBroken:
            self._thread.join()
            raise self._failure() from None
        if not data:
            self._thread.join()
        return data

    def close(self) -> None:
        self._closed = True
        self._pipe.break_(Aborted("the restore stopped reading"))
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


# --- keys ------------------------------------------------------------------------------------


def _recipients(recipients: tuple[str, ...]) -> list[object]:
    try:
        return age_keys.parse_recipients(recipients)
    except age_keys.KeyProblem as err:
        raise ConfigError(str(err), err.hint) from err


def _identities(text: str) -> list[object]:
    """Every identity in an age identity file, or the one unencrypted OpenSSH/PEM key."""
    try:
        return age_keys.parse_identities(text)
    except age_keys.KeyProblem as err:
        raise IntegrityError(str(err), err.hint) from None


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
    """The fingerprint of the public half of an unencrypted OpenSSH private key."""
    try:
        key = serialization.load_ssh_private_key(text.encode(), password=None)
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):  # damaged, encrypted, unknown kind
        return None
    return _fingerprint(public.decode())
