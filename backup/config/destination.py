"""A destination URL, parsed: ``b2://bucket/prefix``, ``s3://bucket/prefix``, ``gs://bucket/prefix``,
``azure://container/prefix`` (``az://`` is the same) or ``file:///path``.

Parsing belongs to the configuration (``BACKUP_DESTINATIONS`` is validated before anything
runs); opening the backend for a parsed destination belongs to ``backup.storage``, whose
registry has one backend per scheme in ``SCHEMES``.

Refused, each with exit 2: another scheme; credentials (``user:secret@``: never quoted back);
control characters; ``?`` or ``#``; a bucket name S3, B2 or GCS would refuse, a container name
Azure would refuse; a ``.`` or ``..``
segment or an empty one in a prefix; a ``file://`` URL naming a host (``file://relative/path``)
rather than an absolute path (``file:///path``) or one relative to the working directory
(``file://./path``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from backup.config import syntax
from backup.errors import ConfigError

SCHEMES = ("b2", "s3", "gs", "azure", "az", "file")
"""Every scheme a destination may use; ``backup.storage.BACKENDS`` has a backend for each."""

USAGE = (
    "use b2://bucket/prefix, s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix, "
    "file:///absolute/path or file://./relative"
)
# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
AZURE_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
CREDENTIALS_HINT = "put keys in B2_KEY_ID/B2_APPLICATION_KEY or AWS_ACCESS_KEY_ID/..."


@dataclass(frozen=True)
class Destination:
    """A parsed destination URL: ``scheme://bucket/prefix`` or ``file:///path``."""

    url: str
    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Destination:
        url = url.strip()
        if len(url) > syntax.MAX_VALUE_CHARS:
            raise ConfigError(f"BACKUP_DESTINATIONS: a destination is {len(url)} characters long")
        if "@" in url.partition("://")[2].split("/", 1)[0]:
            # Before anything quotes the URL: what precedes the @ is a secret.
            raise ConfigError(
                "BACKUP_DESTINATIONS: credentials in a destination URL are not accepted",
                hint=CREDENTIALS_HINT,
            )
        problem = syntax.character_problem(url)
        if problem:
            raise ConfigError(f"BACKUP_DESTINATIONS: a destination {problem}", hint=USAGE)
        shown = syntax.shown(url)
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ConfigError(
                f"BACKUP_DESTINATIONS: {shown} is not a valid URL", hint=USAGE
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES or not url.lower().startswith(f"{scheme}://"):
            raise ConfigError(f"BACKUP_DESTINATIONS: unsupported destination {shown}", hint=USAGE)
        if parts.query or parts.fragment or "?" in url or "#" in url:
            raise ConfigError(f"BACKUP_DESTINATIONS: {shown} has a '?' or '#'", hint=USAGE)
        if scheme == "file":
            return cls(
                url=url,
                scheme=scheme,
                bucket="",
                prefix=_file_path(parts.netloc, parts.path, shown),
            )
        if not parts.netloc:
            raise ConfigError(f"BACKUP_DESTINATIONS: {shown} has no bucket name", hint=USAGE)
        problem = syntax.bucket_problem(parts.netloc)
        if scheme in ("azure", "az") and not AZURE_CONTAINER.fullmatch(parts.netloc):
            problem = (
                f"has an invalid container name {syntax.shown(parts.netloc)} (3-63 lowercase "
                "letters, digits and single '-', starting and ending with a letter or digit)"
            )
        if problem:
            raise ConfigError(f"BACKUP_DESTINATIONS: {shown} {problem}", hint=USAGE)
        prefix = parts.path.strip("/")
        _check_segments(prefix, shown)
        return cls(url=url, scheme=scheme, bucket=parts.netloc, prefix=prefix)


def _file_path(netloc: str, path: str, shown: str) -> str:
    """``file:///abs`` -> ``/abs``; ``file://./rel`` -> ``./rel``; anything else is refused."""
    if netloc == "":
        if not path.startswith("/"):
            raise ConfigError(f"BACKUP_DESTINATIONS: {shown} has no path", hint=USAGE)
        _check_segments(path.strip("/"), shown)
        return path
    if netloc == ".":
        _check_segments(path.strip("/"), shown)
        return "." + path
    raise ConfigError(
        f"BACKUP_DESTINATIONS: {shown} names the host {syntax.shown(netloc)}, not a path",
        hint="an absolute path takes three slashes (file:///var/backups); a path relative to "
        "the working directory starts with ./ (file://./backups)",
    )


def _check_segments(prefix: str, shown: str) -> None:
    if not prefix:
        return
    for segment in prefix.split("/"):
        if segment in ("", ".", ".."):
            raise ConfigError(
                f"BACKUP_DESTINATIONS: {shown} has an empty, '.' or '..' path segment",
                hint="name the folder plainly: s3://bucket/backups/postgresql",
            )
