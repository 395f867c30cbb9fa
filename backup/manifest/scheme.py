"""The object key scheme: where each backup's object and manifest live, and their names.

    <database>/<database>-<YYYYmmddTHHMMSSZ>.dump[.zst|.gz][.age]
    <database>/<database>-<YYYYmmddTHHMMSSZ>.manifest.json
    _globals/globals-<YYYYmmddTHHMMSSZ>.sql[...]  and its .manifest.json
    _state/status-<job>.json  (and _state/status.json, the history jobs shared before)

A directory-format backup (``BACKUP_FORMAT=directory``) has a manifest like any other and
stores each file of pg_dump's directory under a content address in its database's folder,
shared by every backup of that database that holds the same file:

    <database>/_objects/<first 2 hex>/<64 hex>[.zst|.gz][.age]
    <database>/_dedup.key          the address key, when it is kept in the destination

Neither is a data object of the scheme: no cleanup of orphans ever takes one for an orphan.

Database names with characters outside ``[A-Za-z0-9._-]`` (and a leading ``_``, which would
collide with ``_globals`` / ``_state``) are percent-encoded in keys; the manifest keeps the real
name. The suffix after ``.dump`` / ``.sql`` (compression, then encryption) is part of the scheme.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

GLOBALS_DIR = "_globals"
STATE_DIR = "_state"
MANIFEST_SUFFIX = ".manifest.json"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_NAME = re.compile(r"^(?P<db>.+)-(?P<ts>\d{8}T\d{6}Z)$")
COMPRESSION_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
ENCRYPTION_SUFFIX = ".age"
OBJECTS_DIR = "_objects"
DEDUP_KEY_NAME = "_dedup.key"
_ADDRESS = re.compile(r"^[0-9a-f]{64}$")
# A backup dated further ahead than this is "future-dated": flagged by list, status and check,
# kept by retention but never counted among the newest N, never what ``latest`` means (a
# tolerance for small clock differences).
FUTURE_TOLERANCE = timedelta(days=1)


def future_dated(created_at: datetime, now: datetime) -> bool:
    """More than ``FUTURE_TOLERANCE`` ahead of ``now``."""
    return created_at - now > FUTURE_TOLERANCE


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


def objects_prefix(database: str) -> str:
    """The folder of a database's content objects (directory-format backups)."""
    return f"{encode_name(database)}/{OBJECTS_DIR}/"


def content_key(database: str, address: str, suffix: str) -> str:
    """Where the file with content address ``address`` (64 lowercase hex) is stored."""
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"not a content address: {address!r}")
    return f"{objects_prefix(database)}{address[:2]}/{address}{suffix}"


def is_content_key(key: str, database: str, suffix: str) -> bool:
    """Whether ``key`` is a content object of ``database`` encoded with ``suffix``."""
    stem = key.removeprefix(objects_prefix(database))
    if stem == key or not stem.endswith(suffix):
        return False
    stem = stem[: len(stem) - len(suffix)] if suffix else stem
    folder, _, address = stem.partition("/")
    return bool(_ADDRESS.fullmatch(address)) and folder == address[:2]


def dedup_key_key(database: str) -> str:
    return f"{encode_name(database)}/{DEDUP_KEY_NAME}"


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
