"""age keys parsed with pyrage: the recipients a backup is encrypted to, the identities that
open it. One implementation, used by the configuration (refused before anything runs, exit 2)
and by ``backup.stream.age`` (which maps a problem to its own error).

A problem never quotes an identity: its text is a secret.
"""

from __future__ import annotations

from collections.abc import Iterable

IDENTITY_HINT = "set BACKUP_AGE_IDENTITY or BACKUP_AGE_IDENTITY_FILE"
RECIPIENT_HINT = "use the line 'Public key: age1...' printed by age-keygen, or an ssh .pub line"


class KeyProblem(ValueError):
    """A recipient or identity that cannot be used; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def parse_recipient(recipient: str) -> object:
    """One recipient: ``age1...`` (X25519), ``ssh-ed25519 ...`` or ``ssh-rsa ...``."""
    import pyrage  # only when keys are configured

    module = pyrage.ssh if recipient.startswith("ssh-") else pyrage.x25519
    try:
        return module.Recipient.from_str(recipient)
    except Exception as err:  # pyrage.RecipientError, or ValueError for bad encodings
        raise KeyProblem(
            f"BACKUP_AGE_RECIPIENTS: {recipient[:16]}... is not a valid age or ssh public key",
            RECIPIENT_HINT,
        ) from err


def parse_recipients(recipients: Iterable[str]) -> list[object]:
    return [parse_recipient(recipient) for recipient in recipients]


def parse_identities(text: str) -> list[object]:
    """Every identity in an age identity file, or the one unencrypted OpenSSH/PEM key."""
    import pyrage

    if "-----BEGIN" in text:
        try:
            return [pyrage.ssh.Identity.from_buffer(text.encode())]
        except Exception:
            raise KeyProblem(
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
            raise KeyProblem(
                f"BACKUP_AGE_IDENTITY line {number} is not an age identity (AGE-SECRET-KEY-1...)",
                "use the file written by age-keygen; " + IDENTITY_HINT,
            ) from None
    if not identities:
        raise KeyProblem("BACKUP_AGE_IDENTITY holds no age identity", IDENTITY_HINT)
    return identities
