"""A destination URL, parsed: ``b2://bucket/prefix``, ``s3://bucket/prefix`` or ``file:///path``.

Parsing belongs to the configuration (``BACKUP_DESTINATIONS`` is validated before anything
runs); opening the backend for a parsed destination belongs to ``backup.storage``, whose
registry has one backend per scheme in ``SCHEMES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from backup.errors import ConfigError

SCHEMES = ("b2", "s3", "file")
"""Every scheme a destination may use; ``backup.storage.BACKENDS`` has a backend for each."""


@dataclass(frozen=True)
class Destination:
    """A parsed destination URL: ``scheme://bucket/prefix`` or ``file:///path``."""

    url: str
    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Destination:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise ConfigError(
                f"BACKUP_DESTINATIONS: unsupported destination {url!r}",
                hint="use b2://bucket/prefix, s3://bucket/prefix or file:///path",
            )
        if scheme == "file":
            # file:///abs/path, file://./relative and file://relative are all accepted.
            path = (parts.netloc + parts.path) if parts.netloc else parts.path
            if not path:
                raise ConfigError(f"BACKUP_DESTINATIONS: {url!r} has no path")
            return cls(url=url.strip(), scheme=scheme, bucket="", prefix=path)
        if not parts.netloc:
            raise ConfigError(f"BACKUP_DESTINATIONS: {url!r} has no bucket name")
        if "@" in parts.netloc:
            raise ConfigError(
                "BACKUP_DESTINATIONS: credentials in a destination URL are not accepted",
                hint="put keys in B2_KEY_ID/B2_APPLICATION_KEY or AWS_ACCESS_KEY_ID/...",
            )
        return cls(
            url=url.strip(), scheme=scheme, bucket=parts.netloc, prefix=parts.path.strip("/")
        )
