"""The object key scheme: where each backup's object and manifest live, and their names.

    <database>/<database>-<YYYYmmddTHHMMSSZ>.dump[.zst|.gz][.age]
    <database>/<database>-<YYYYmmddTHHMMSSZ>.manifest.json
    _globals/globals-<YYYYmmddTHHMMSSZ>.sql[...]  and its .manifest.json
    _state/status.json

Database names with characters outside ``[A-Za-z0-9._-]`` (and a leading ``_``, which would
collide with ``_globals`` / ``_state``) are percent-encoded in keys; the manifest keeps the real
name. The suffix after ``.dump`` / ``.sql`` (compression, then encryption) is part of the scheme.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

GLOBALS_DIR = "_globals"
STATE_DIR = "_state"
MANIFEST_SUFFIX = ".manifest.json"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_NAME = re.compile(r"^(?P<db>.+)-(?P<ts>\d{8}T\d{6}Z)$")
COMPRESSION_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
ENCRYPTION_SUFFIX = ".age"


def object_suffix(compression: str, encrypted: bool) -> str:
    """``.zst``, ``.gz.age``, ...: the suffix after ``.dump`` / ``.sql`` in an object key."""
    return COMPRESSION_SUFFIX[compression] + (ENCRYPTION_SUFFIX if encrypted else "")


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def encode_name(database: str) -> str:
    """Percent-encode a database name for use in a key (UTF-8, like URLs)."""
    out = []
    for index, char in enumerate(database):
        if _SAFE.fullmatch(char) and not (index == 0 and char == "_"):
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def backup_name(database: str, moment: datetime) -> str:
    return f"{encode_name(database)}-{timestamp(moment)}"


def globals_name(moment: datetime) -> str:
    return f"globals-{timestamp(moment)}"


def object_key(database: str | None, moment: datetime, suffix: str) -> str:
    """Key of the dump itself; ``database=None`` for the globals (roles, tablespaces)."""
    if database is None:
        return f"{GLOBALS_DIR}/{globals_name(moment)}.sql{suffix}"
    return f"{encode_name(database)}/{backup_name(database, moment)}.dump{suffix}"


def manifest_key(database: str | None, moment: datetime) -> str:
    if database is None:
        return f"{GLOBALS_DIR}/{globals_name(moment)}{MANIFEST_SUFFIX}"
    return f"{encode_name(database)}/{backup_name(database, moment)}{MANIFEST_SUFFIX}"


def key_timestamp(key: str) -> str:
    """The timestamp in a manifest key's name, or "" when it has none (or an impossible one,
    such as month 91: a name nobody's clock wrote)."""
    stem = key.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX)
    match = _NAME.match(stem)
    if not match:
        return ""
    try:
        parse_timestamp(match["ts"])
    except ValueError:
        return ""
    return match["ts"]


def _data_key_pattern() -> re.Pattern[str]:
    suffixes = "|".join(
        re.escape(object_suffix(c, e)) for c in COMPRESSION_SUFFIX for e in (False, True)
    )
    return re.compile(
        rf"^(?P<stem>(?P<folder>[^/]+)/(?P=folder)-\d{{8}}T\d{{6}}Z)\.dump(?:{suffixes})$"
        rf"|^(?P<gstem>{GLOBALS_DIR}/globals-\d{{8}}T\d{{6}}Z)\.sql(?:{suffixes})$"
    )


_DATA_KEY = _data_key_pattern()


def manifest_key_of_object(key: str) -> str | None:
    """The manifest key that commits the data object ``key``; None if ``key`` is not a data
    object of the key scheme."""
    match = _DATA_KEY.match(key)
    if not match:
        return None
    return (match["stem"] or match["gstem"]) + MANIFEST_SUFFIX
