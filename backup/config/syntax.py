"""The syntax rules of configuration values: lengths, characters, URLs, host names, regions,
time zones.

Pure functions returning a problem (a phrase to follow the variable's name) or ``None``; the
``Reader`` of ``environment.py`` names the variable. No rule echoes more than ``SHOWN_CHARS`` of
a value, and the callers never pass a secret to ``shown``.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from collections.abc import Callable
from urllib.parse import SplitResult, unquote, urlsplit

MAX_VALUE_CHARS = 4096
"""The longest plain value accepted (a path, a list of databases, a URL)."""
MAX_SECRET_CHARS = 64 * 1024
"""The longest secret or key list accepted (an ssh RSA private key is about 3,400)."""
SHOWN_CHARS = 40
"""At most this much of a refused value is quoted back."""

# Hosts: RFC 1123 labels; underscores too, which DNS names of containers and services carry.
# https://www.rfc-editor.org/rfc/rfc1123#page-13
MAX_HOST_CHARS = 253
HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# botocore's own rule for region names (botocore.utils.validate_region_name): a host label.
REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")
# IANA time zone names: Europe/Paris, America/Argentina/Buenos_Aires, Etc/GMT+5, UTC.
TIMEZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
# Buckets: what S3 and B2 both accept, loosened to the characters S3-compatible stores allow.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
# https://www.backblaze.com/docs/cloud-storage-buckets
BUCKET = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{1,61})[A-Za-z0-9]")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def shown(value: str) -> str:
    """``value`` quoted for a message: escaped, and cut after ``SHOWN_CHARS`` characters."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return repr(value[:SHOWN_CHARS]) + f"... ({len(value)} characters)"


def character_problem(value: str) -> str | None:
    """Control characters (a newline too) and undecodable bytes are refused in every value."""
    match = CONTROL.search(value)
    if match is None:
        return None
    if "\ud800" <= match.group() <= "\udfff":
        return "is not valid UTF-8"
    return "contains a control character (a newline, a tab, ...)"


def host_problem(host: str) -> str | None:
    """A DNS name or an IP address (IPv6 without brackets)."""
    if not host:
        return "has no host name"
    if len(host) > MAX_HOST_CHARS:
        return f"has a host name longer than {MAX_HOST_CHARS} characters"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if all(HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return f"has an invalid host name {shown(host)}"


def pghost_problem(value: str) -> str | None:
    """libpq's PGHOST: a comma list of host names, IP addresses or socket directories."""
    for item in value.split(","):
        item = item.strip()
        if item.startswith("/"):
            if len(item) > MAX_HOST_CHARS:
                return f"has a socket directory longer than {MAX_HOST_CHARS} characters"
            continue
        problem = host_problem(item)
        if problem:
            return problem
    return None


def url_host_problem(host: str) -> str | None:
    """The host of a ``postgresql://`` URL: percent-encoded, it may be a socket directory."""
    return pghost_problem(unquote(host))


def port_problem(value: str) -> str | None:
    """A port number 1-65535, or libpq's comma list of them."""
    for item in value.split(","):
        item = item.strip()
        if not (item.isascii() and item.isdigit() and len(item) <= 5 and 0 < int(item) < 65536):
            return f"{shown(item)} is not a port number (1-65535)"
    return None


def region_problem(value: str) -> str | None:
    if REGION.fullmatch(value):
        return None
    return f"{shown(value)} is not a region name (letters, digits and '-', like eu-central-1)"


def bucket_problem(value: str) -> str | None:
    if BUCKET.fullmatch(value) and ".." not in value:
        return None
    return (
        f"has an invalid bucket name {shown(value)} (3-63 letters, digits, '.', '-', '_', "
        "starting and ending with a letter or digit)"
    )


def url_problem(
    value: str,
    schemes: tuple[str, ...],
    secret: bool = False,
    host_required: bool = True,
    host_rule: Callable[[str], str | None] = host_problem,
) -> tuple[SplitResult | None, str | None]:
    """``(parts, None)`` for a well-formed URL of one of ``schemes``, else ``(None, problem)``.

    Well-formed: ASCII, no control character or space, a valid host name or bracketed IP
    address (or what ``host_rule`` accepts), a valid port. A ``secret`` URL is never quoted in
    the problem."""
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    if not value.isascii():
        return None, "must be ASCII (percent-encode other characters)"
    if CONTROL.search(value) or " " in value:
        return None, "contains a space or a control character"
    quoted = "" if secret else f" {shown(value)}"
    try:
        parts = urlsplit(value)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        return None, f"is not a valid URL{quoted} (a bracket or port out of place?)"
    if parts.scheme.lower() not in schemes:
        return None, f"must start with {expected}"
    if port == 0:
        return None, "has port 0"
    if hostname is None:
        if host_required:
            return None, f"has no host name{quoted}"
        return parts, None
    problem = host_rule(hostname)
    if problem:
        return None, problem if not secret else "has an invalid host name"
    return parts, None


def postgres_url_problem(url: str) -> tuple[SplitResult | None, str | None]:
    """``url_problem`` for a ``postgresql://`` connection URL (``DATABASE_URL``,
    ``VERIFY_DATABASE_URL``): never quoted back, since it may hold the password."""
    return url_problem(
        url,
        ("postgresql", "postgres"),
        secret=True,
        host_required=False,
        host_rule=url_host_problem,
    )


def timezone_problem(value: str) -> str | None:
    """An IANA time zone that zoneinfo can load: from the system's zone files, else from the
    tzdata package (a dependency, for images without /usr/share/zoneinfo)."""
    if TIMEZONE_NAME.fullmatch(value):
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return None
    import difflib  # only for a wrong time zone

    close = difflib.get_close_matches(value[:100], sorted(zoneinfo.available_timezones()), n=1)
    suggestion = f"; did you mean {close[0]}?" if close else ""
    return (
        "is not a time zone (an IANA name such as Europe/Paris, America/New_York or UTC)"
        + suggestion
    )
