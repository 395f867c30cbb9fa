"""age encryption of the backup stream (``encryption.py``), its worker threads and bounded pipe
(``pipe.py``), and the age header format for passphrase (scrypt) files (``header.py``)."""

from backup.stream.age.encryption import (
    identity_matches,
    open_decryptor,
    open_encryptor,
    recipient_fingerprints,
)

__all__ = ["identity_matches", "open_decryptor", "open_encryptor", "recipient_fingerprints"]
