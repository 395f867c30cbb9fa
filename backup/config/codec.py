"""Compression and encryption settings: BACKUP_COMPRESSION*, the age recipients, passphrase
and identity. A setting that names a key either encrypts or is refused (exit 2): a recipients
file naming no recipient, or a key variable set to blanks, is never read as "unset"."""

from __future__ import annotations

from backup.config import age_keys, cpus, files, syntax
from backup.config.model import MAX_COMPRESSION_THREADS, CodecConfig
from backup.config.reader import Reader
from backup.config.syntax import MAX_SECRET_CHARS


def read_codec(r: Reader) -> CodecConfig:
    compression = r.choice("BACKUP_COMPRESSION", "zstd", ("zstd", "gzip", "none"))
    limits = {"zstd": (1, 22), "gzip": (1, 9), "none": (0, 0)}[compression]
    level = r.int("BACKUP_COMPRESSION_LEVEL", None, limits[0], limits[1])
    threads = r.int("BACKUP_COMPRESSION_THREADS", None, 0, MAX_COMPRESSION_THREADS)
    if threads is None:  # the cores the job may use, not the host's: cgroup quota, affinity
        threads = min(cpus.available_cores(), MAX_COMPRESSION_THREADS)
    recipients = _recipients(r)
    for name in ENCRYPTION_VARIABLES:
        if _blank(r, name):
            r.problems.append(
                f"{name} is set but holds only blanks or commas: a key, or the file of one, "
                "is never read as unset (that would mean no encryption); set it, or unset it"
            )
    passphrase = r.secret("BACKUP_AGE_PASSPHRASE")
    if recipients and passphrase:
        r.problems.append("BACKUP_AGE_RECIPIENTS and BACKUP_AGE_PASSPHRASE are both set: keep one")
    for recipient in recipients:
        try:
            age_keys.parse_recipient(recipient)
        except age_keys.KeyProblem as err:
            r.problems.append(str(err))
    identity = r.secret("BACKUP_AGE_IDENTITY")
    if identity:
        try:
            age_keys.parse_identities(identity.reveal())
        except age_keys.KeyProblem as err:
            r.problems.append(str(err))
    return CodecConfig(
        compression=compression,
        level=level,
        threads=threads,
        age_recipients=recipients,
        age_passphrase=passphrase,
        age_identity=identity,
    )


ENCRYPTION_VARIABLES = (
    "BACKUP_AGE_RECIPIENTS",
    "BACKUP_AGE_RECIPIENTS_FILE",
    "BACKUP_AGE_PASSPHRASE",
    "BACKUP_AGE_PASSPHRASE_FILE",
    "BACKUP_AGE_IDENTITY",
    "BACKUP_AGE_IDENTITY_FILE",
    "BACKUP_DEDUP_KEY",
    "BACKUP_DEDUP_KEY_FILE",
)
"""A key, or the file of one: set to blanks (a secret mounted from an empty key, a template
that lost its value) it is a mistake, never "unset" (which would mean plaintext backups)."""


def _blank(r: Reader, name: str) -> bool:
    """Set to a non-empty value made of blanks and commas only (an empty value is unset)."""
    value = r.env.get(name, "")
    return bool(value) and not value.replace(",", "").strip()


def _recipients(r: Reader) -> tuple[str, ...]:
    """BACKUP_AGE_RECIPIENTS and the lines of BACKUP_AGE_RECIPIENTS_FILE. A file that names no
    recipient (empty, blank lines, only comments) is refused: it was meant to encrypt, and
    reading it as "no recipients" would make a plaintext backup without a word."""
    recipients = r.csv("BACKUP_AGE_RECIPIENTS", max_chars=MAX_SECRET_CHARS)
    path = r.str("BACKUP_AGE_RECIPIENTS_FILE")
    if not path:
        return recipients
    try:
        lines = files.read_small_text(path).splitlines()
    except files.FileProblem as err:
        r.problems.append(f"BACKUP_AGE_RECIPIENTS_FILE: {err}")
        return recipients
    # age's own format: one recipient per line, blank lines and "#" comments ignored.
    listed = tuple(
        line.strip() for line in lines if line.strip() and not line.strip().startswith("#")
    )
    problem = next(filter(None, map(syntax.character_problem, listed)), None)
    if problem:
        r.problems.append(f"BACKUP_AGE_RECIPIENTS_FILE: a line {problem}")
    elif not listed:
        r.problems.append(
            f"BACKUP_AGE_RECIPIENTS_FILE: {path} names no recipient (empty, or only comments): "
            "a backup would not be encrypted"
        )
        r.hints.append(
            "put the public keys in it (age-keygen -y KEY, or an ssh .pub line), or unset "
            "BACKUP_AGE_RECIPIENTS_FILE for plaintext backups"
        )
    return recipients + listed
