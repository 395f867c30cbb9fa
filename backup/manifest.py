"""Object key scheme and manifests, the commit markers of backups.

A backup exists only once its manifest exists: the manifest is written after every byte of the
dump reached the destination, and ``list``, ``restore`` and retention read manifests only.

    <database>/<database>-<YYYYmmddTHHMMSSZ>.dump[.zst|.gz][.age]
    <database>/<database>-<YYYYmmddTHHMMSSZ>.manifest.json
    _globals/globals-<YYYYmmddTHHMMSSZ>.sql[...]  and its .manifest.json
    _state/status.json

Database names with characters outside ``[A-Za-z0-9._-]`` (and a leading ``_``, which would
collide with ``_globals`` / ``_state``) are percent-encoded in keys; the manifest keeps the real
name.

A manifest is believed only about its own backup (``Manifest.problem``): every field of the right
type, its name the scheme's name for its database and ``created_at``, read from the scheme's
manifest key, and naming as its object exactly the scheme's object key with the suffix of its
compression and encryption. ``scan`` sorts what a destination holds into trusted manifests and
rejected ones (with the reason); nothing reads, restores or deletes through a rejected one.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from backup.errors import IntegrityError, ObjectNotFound, StorageError
from backup.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
GLOBALS_DIR = "_globals"
STATE_DIR = "_state"
MANIFEST_SUFFIX = ".manifest.json"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_NAME = re.compile(r"^(?P<db>.+)-(?P<ts>\d{8}T\d{6}Z)$")
# The object suffix is part of the key scheme: ``<name>.dump`` + compression + encryption.
COMPRESSION_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
ENCRYPTION_SUFFIX = ".age"
KINDS = ("database", "globals")


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


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str  # "database" | "globals"
    database: str | None
    created_at: datetime
    finished_at: datetime
    object_key: str
    size_bytes: int
    sha256: str
    compression: str
    encryption: dict[str, Any] | None
    pg_dump_version: str
    server_version: str
    duration_s: float
    job_version: str
    raw_size_bytes: int = 0
    row_counts: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def encrypted(self) -> bool:
        return bool(self.encryption)

    @property
    def key(self) -> str:
        """This manifest's own key."""
        return manifest_key(self.database if self.kind == "database" else None, self.created_at)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["created_at"] = _iso(self.created_at)
        data["finished_at"] = _iso(self.finished_at)
        ordered = {"format_version": data.pop("format_version"), **data}
        return (json.dumps(ordered, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, key: str = "?") -> Manifest:
        """Parse and validate: every required field present with the right type, else an
        ``IntegrityError`` naming the field (a damaged or hand-edited manifest)."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise _invalid(key, f"not JSON ({err})") from err
        if not isinstance(data, dict):
            raise _invalid(key, "not a JSON object")
        version = data.get("format_version", FORMAT_VERSION)
        if not _is_int(version):
            raise _invalid(key, "format_version is not an integer")
        if version > FORMAT_VERSION:
            raise IntegrityError(
                f"manifest {key} has format {version}, newer than this job",
                hint="upgrade pgbackup-job to read it",
            )
        reason = _field_problem(data)
        if reason:
            raise _invalid(key, reason)
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["created_at"] = _parse_iso(data["created_at"])
        values["finished_at"] = _parse_iso(data["finished_at"])
        return cls(**values)

    @property
    def expected_object_key(self) -> str:
        """The object key the scheme gives this manifest's kind, database, time and suffix."""
        database = self.database if self.kind == "database" else None
        suffix = object_suffix(self.compression, self.encrypted)
        return object_key(database, self.created_at, suffix)

    def problem(self, read_from: str | None = None) -> str | None:
        """Why this manifest cannot be believed about its backup, or None. ``read_from`` is the
        key it was read from, which must be its own."""
        if self.kind == "database":
            expected_name = backup_name(self.database or "", self.created_at)
        else:
            expected_name = globals_name(self.created_at)
        if self.name != expected_name:
            return (
                f"its name {self.name!r} is not {expected_name!r}, the name the key scheme gives "
                f"a backup of {self.database or 'the globals'} made at {timestamp(self.created_at)}"
            )
        if read_from is not None and read_from != self.key:
            return f"it was read from {read_from}, not from {self.key}, the key of its own name"
        expected_object = self.expected_object_key
        if self.object_key != expected_object:
            return (
                f"it names {self.object_key!r} as its object, not {expected_object!r}: "
                "that object is not this backup's"
            )
        return None

    def to_listing(self, destination: str) -> dict[str, Any]:
        """The object ``list --json`` prints."""
        return {
            "name": self.name,
            "database": self.database,
            "kind": self.kind,
            "created_at": _iso(self.created_at),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "compression": self.compression,
            "encrypted": self.encrypted,
            "destination": destination,
            "object_key": self.object_key,
            "pg_dump_version": self.pg_dump_version,
            "server_version": self.server_version,
        }


_TEXT_FIELDS = (
    "name",
    "kind",
    "created_at",
    "finished_at",
    "object_key",
    "sha256",
    "compression",
    "pg_dump_version",
    "server_version",
    "job_version",
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problem(data: dict[str, Any]) -> str | None:
    """The first field of a manifest that is missing or of the wrong type, as a sentence."""
    for name in (*_TEXT_FIELDS, "size_bytes", "duration_s", "database", "encryption"):
        if name not in data:
            return f"the field {name!r} is missing"
    for name in _TEXT_FIELDS:
        if not isinstance(data[name], str):
            return f"{name} is {data[name]!r}, not a string"
    if not _is_int(data["size_bytes"]) or data["size_bytes"] < 0:
        return f"size_bytes is {data['size_bytes']!r}, not a byte count"
    if not _is_int(data.get("raw_size_bytes", 0)) or data.get("raw_size_bytes", 0) < 0:
        return f"raw_size_bytes is {data['raw_size_bytes']!r}, not a byte count"
    duration = data["duration_s"]
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        return f"duration_s is {duration!r}, not a number"
    if not _SHA256.match(data["sha256"]):
        return f"sha256 is {data['sha256']!r}, not 64 lowercase hex digits"
    if data["kind"] not in KINDS:
        return f"kind is {data['kind']!r}, not one of {', '.join(KINDS)}"
    database = data["database"]
    if data["kind"] == "database" and (not isinstance(database, str) or not database):
        return f"database is {database!r}, not a database name"
    if data["kind"] == "globals" and database is not None:
        return f"a globals manifest names the database {database!r}"
    if data["compression"] not in COMPRESSION_SUFFIX:
        return f"compression is {data['compression']!r}, not one of {', '.join(COMPRESSION_SUFFIX)}"
    if data["encryption"] is not None and not isinstance(data["encryption"], dict):
        return f"encryption is {data['encryption']!r}, not an object or null"
    if not isinstance(data.get("row_counts", {}), dict):
        return "row_counts is not an object"
    for name in ("created_at", "finished_at"):
        try:
            _parse_iso(data[name])
        except ValueError:
            return f"{name} is {data[name]!r}, not an ISO 8601 time"
    return None


def _invalid(key: str, reason: str) -> IntegrityError:
    return IntegrityError(
        f"manifest {key} is not valid: {reason}",
        hint="it was damaged or edited by hand: list flags it and prune leaves it and its object "
        "alone; restore another backup, and delete both by hand once you know what they are",
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def write(storage: Storage, manifest: Manifest) -> None:
    storage.put(manifest.key, io.BytesIO(manifest.to_json()))


def read(storage: Storage, key: str) -> Manifest:
    """The manifest at ``key``, validated and believed (``IntegrityError`` otherwise)."""
    record = _load(storage, key)
    reason = record.problem(key)
    if reason:
        raise untrusted_error(key, reason)
    return record


def _load(storage: Storage, key: str) -> Manifest:
    with storage.open(key) as stream:
        return Manifest.from_json(stream.read(), key)


def untrusted_error(key: str, reason: str) -> IntegrityError:
    return IntegrityError(
        f"manifest {key} is not trustworthy: {reason}",
        hint="a stale or tampered manifest: nothing is restored, verified or deleted through it; "
        "restore another backup ('list' flags this one)",
    )


@dataclass(frozen=True)
class Rejected:
    """A manifest that cannot be believed: invalid, or not about its own backup. Its name,
    database and time come from its key, the one thing the key scheme vouches for."""

    key: str
    reason: str
    manifest: Manifest | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX)

    @property
    def kind(self) -> str:
        return "globals" if self.key.startswith(f"{GLOBALS_DIR}/") else "database"

    @property
    def database(self) -> str | None:
        return None if self.kind == "globals" else unquote(self.key.split("/", 1)[0])

    @property
    def created_at(self) -> datetime | None:
        stamp = _key_timestamp(self.key)
        return parse_timestamp(stamp) if stamp else None

    def to_listing(self, destination: str) -> dict[str, Any]:
        """The object ``list --json`` prints for it: the listing's fields, ``trusted`` false."""
        claimed = self.manifest.to_listing(destination) if self.manifest else {}
        created = self.created_at
        return {
            **{k: None for k in _LISTING_FIELDS},
            **claimed,
            "name": self.name,
            "database": self.database,
            "kind": self.kind,
            "created_at": _iso(created) if created else None,
            "destination": destination,
            "manifest_key": self.key,
            "trusted": False,
            "problem": self.reason,
        }


_LISTING_FIELDS = (
    "name",
    "database",
    "kind",
    "created_at",
    "size_bytes",
    "sha256",
    "compression",
    "encrypted",
    "destination",
    "object_key",
    "pg_dump_version",
    "server_version",
)


@dataclass(frozen=True)
class Scan:
    """What a destination's manifests say: the trusted ones and the rejected ones, newest first."""

    trusted: list[Manifest]
    rejected: list[Rejected]


@dataclass(frozen=True)
class Scope:
    """The databases one job answers for (and the globals with ``BACKUP_DATABASES=all``):
    retention, ``status`` and cleanups look only in their folders, so jobs that share a prefix
    never touch each other's backups."""

    databases: frozenset[str]
    globals: bool = False

    def folders(self) -> list[str]:
        names = sorted({encode_name(d) for d in self.databases})
        return names + ([GLOBALS_DIR] if self.globals else [])

    def covers(self, kind: str, database: str | None) -> bool:
        if kind == "globals":
            return self.globals
        return database is not None and database in self.databases


def scoped_objects(storage: Storage, scope: Scope) -> list[ObjectInfo]:
    """Every object in the scope's folders (one listing per folder, never the whole prefix)."""
    found: list[ObjectInfo] = []
    for folder in scope.folders():
        found.extend(storage.list(f"{folder}/"))
    return found


def manifest_keys_in(infos: Iterable[ObjectInfo], globals_only: bool | None = None) -> list[str]:
    """Manifest keys among ``infos``, newest first by key timestamp; ``globals_only=None``
    keeps both kinds."""
    keys = []
    for info in infos:
        key = info.key
        if not key.endswith(MANIFEST_SUFFIX) or key.count("/") != 1:
            continue
        top = key.split("/", 1)[0]
        if top == STATE_DIR:
            continue
        if globals_only is not None and (top == GLOBALS_DIR) != globals_only:
            continue
        keys.append(key)
    return sorted(keys, key=_key_timestamp, reverse=True)


def manifest_keys(storage: Storage, globals_only: bool = False) -> list[str]:
    """Every manifest key of database backups (or of globals), newest first by key timestamp."""
    prefix = f"{GLOBALS_DIR}/" if globals_only else ""
    return manifest_keys_in(storage.list(prefix), globals_only)


def _key_timestamp(key: str) -> str:
    stem = key.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX)
    match = _NAME.match(stem)
    return match["ts"] if match else ""


def scan_keys(storage: Storage, keys: Iterable[str]) -> Scan:
    """Read and judge every manifest in ``keys``. A damaged or lying manifest does not hide
    the others: it is returned as ``Rejected`` with the reason."""
    trusted: list[Manifest] = []
    rejected: list[Rejected] = []
    for key in keys:
        try:
            record = _load(storage, key)
        except ObjectNotFound:
            continue  # deleted between list and read (a concurrent prune)
        except IntegrityError as err:
            rejected.append(Rejected(key, err.message.removeprefix(f"manifest {key} is ")))
            continue
        except StorageError as err:
            rejected.append(Rejected(key, f"cannot be read: {err.message}"))
            continue
        reason = record.problem(key)
        if reason:
            rejected.append(Rejected(key, reason, record))
        else:
            trusted.append(record)
    trusted.sort(key=lambda m: m.created_at, reverse=True)
    return Scan(trusted, rejected)


def scan(storage: Storage, globals_only: bool = False, scope: Scope | None = None) -> Scan:
    """The manifests of database backups (or of the globals); with ``scope``, those of the
    scope's folders, both kinds."""
    if scope is None:
        return scan_keys(storage, manifest_keys(storage, globals_only))
    return scan_keys(storage, manifest_keys_in(scoped_objects(storage, scope), None))


def read_all(storage: Storage, globals_only: bool = False) -> list[Manifest]:
    """Every trusted manifest, newest first. Rejected ones are skipped with a warning: a
    damaged manifest must not hide the other backups, nor be taken for a backup."""
    found = scan(storage, globals_only)
    for bad in found.rejected:
        log.warning("skipping manifest %s on %s: %s", bad.key, storage.url, bad.reason)
    return found.trusted


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


def orphans(infos: Iterable[ObjectInfo], now: datetime, min_age_s: float) -> list[ObjectInfo]:
    """Data objects among ``infos`` whose manifest is not among them and that are older than
    ``min_age_s`` (so never a live run's upload, whose manifest is still to come). An object
    whose age is unknown is left alone."""
    infos = list(infos)
    present = {info.key for info in infos}
    found = []
    for info in infos:
        committed_by = manifest_key_of_object(info.key)
        if committed_by is None or committed_by in present or info.modified is None:
            continue
        if (now - info.modified).total_seconds() > min_age_s:
            found.append(info)
    return sorted(found, key=lambda o: o.key)
