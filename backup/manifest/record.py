"""The manifest: the commit marker of one backup, its validation on read, and whether it is
believed (``Manifest.problem``): every field of the right type, its name the scheme's name for
its database and ``created_at``, read from the scheme's manifest key, and naming as its object
exactly the scheme's object key with the suffix of its compression and encryption.

A directory-format manifest (``format: "directory"``, format version 2, which older jobs refuse
to read rather than take it for a custom-format one) lists ``files``: each file of pg_dump's
directory with its content object, its sizes and the sha256 of the stored bytes. It is believed
only if every file has a safe name (``toc.dat``, ``NNNN.dat``, large objects' files) and every
object lies in its own database's ``_objects/`` folder with the suffix of its encoding;
``object_key`` is then the ``toc.dat``'s object, ``size_bytes`` the sum of the stored sizes and
``sha256`` the digest of the file list (``files_digest``).

A file stored inside a pack (``dump/packs.py``) has an ``offset`` too: its stored bytes are the
``size_bytes`` from ``offset`` in the object ``key`` names (a pack). A manifest with such files
has format version 3: an older job, which would read the whole pack as the file and call it
damaged, refuses it instead (upgrade); without them a directory-format manifest stays version 2.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from backup.errors import IntegrityError
from backup.manifest.scheme import (
    COMPRESSION_SUFFIX,
    backup_name,
    globals_name,
    is_content_key,
    manifest_key,
    object_key,
    object_suffix,
    timestamp,
)
from backup.storage import Storage

FORMAT_VERSION = 3
"""The newest manifest format this job reads; it writes 1 for custom-format backups (older
jobs read them), 2 for directory-format ones (jobs before the directory format refuse them:
upgrade) and 3 for directory-format ones with packed files (jobs before packs refuse them)."""
CUSTOM_FORMAT_VERSION = 1
DIRECTORY_FORMAT_VERSION = 2
PACKED_FORMAT_VERSION = 3
LEGACY_ADDRESS_HASH = "hmac-sha256"
"""What named the content objects of a directory-format manifest without ``address_hash``."""
KINDS = ("database", "globals")
FORMATS = ("custom", "directory")
# The files pg_dump -Fd -Z0 writes: its table of contents, one NNNN.dat per table's data, and
# the large objects' (blobs.toc + blob_<oid>.dat up to 16, blobs_<id>.toc from 17 on).
SAFE_FILE_NAME = re.compile(
    r"^(toc\.dat|[0-9]{1,10}\.dat|blob_[0-9]{1,10}\.dat|blobs(_[0-9]{1,10})?\.toc)$"
)
FILE_FIELDS = ("name", "key", "plain_bytes", "size_bytes", "sha256", "new")


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
    """``mode``, ``tables`` (rows of each table whose data the archive holds) and, when some
    tables are created without their rows, ``without_data``: what a test restore expects."""
    pg_dump_args: list[str] = field(default_factory=list)
    """BACKUP_PG_DUMP_ARGS as the dump ran with them (absent from older manifests)."""
    excluded: dict[str, Any] = field(default_factory=dict)
    """What was left out: ``table_data_patterns`` (BACKUP_EXCLUDE_TABLE_DATA), ``table_data``
    (tables kept without rows), ``tables`` (the server's tables the archive lacks)."""
    format: str = "custom"
    """``custom`` (one object, ``pg_dump -Fc``) or ``directory`` (``files``, ``pg_dump -Fd``)."""
    files: list[dict[str, Any]] = field(default_factory=list)
    """Directory format: ``name``, ``key`` (content object), ``plain_bytes``, ``size_bytes``
    and ``sha256`` (of the stored bytes), ``new`` (uploaded by this backup); a file inside a
    pack also ``offset`` (its stored bytes' start in the pack ``key`` names)."""
    format_version: int = CUSTOM_FORMAT_VERSION
    source: dict[str, Any] = field(default_factory=dict)
    """Where the dump was taken: ``standby`` (a hot standby or not) and, from a standby,
    ``replay_timestamp`` (the primary's commit time of the last transaction it had replayed)
    and ``replay_lag_s`` when the dump began. Empty for the globals and older manifests."""

    address_hash: str = ""
    """Directory format: the keyed hash that named its content objects (``blake3``; absent,
    from a job before it: ``hmac-sha256``). A later backup reuses an object only under the
    hash its own addresses use (``dump/reuse.py``); restore and verify never need it."""

    @property
    def keyed_hash(self) -> str:
        """The keyed hash of this directory-format backup's addresses ("" for the custom format)."""
        if self.format != "directory":
            return ""
        return self.address_hash or LEGACY_ADDRESS_HASH

    @property
    def new_bytes(self) -> int:
        """Bytes this backup stored itself: all of them in the custom format."""
        if self.format != "directory":
            return self.size_bytes
        return sum(f["size_bytes"] for f in self.files if f.get("new"))

    @property
    def encrypted(self) -> bool:
        return bool(self.encryption)

    @property
    def key(self) -> str:
        """This manifest's own key."""
        return manifest_key(self.database if self.kind == "database" else None, self.created_at)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["created_at"] = iso(self.created_at)
        data["finished_at"] = iso(self.finished_at)
        if not data["address_hash"]:
            del data["address_hash"]  # the custom format's: no content addresses
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
        """Why this manifest cannot be believed about its backup, or None: a phrase that follows
        "the manifest" ("names ... as its object ..."). ``read_from`` is the key it was read
        from, which must be its own."""
        if self.kind == "database":
            expected_name = backup_name(self.database or "", self.created_at)
        else:
            expected_name = globals_name(self.created_at)
        if self.name != expected_name:
            return (
                f"is named {self.name!r}, not {expected_name!r}, the name the key scheme gives "
                f"a backup of {self.database or 'the globals'} made at {timestamp(self.created_at)}"
            )
        if read_from is not None and read_from != self.key:
            return f"was read from {read_from}, not from {self.key}, the key of its own name"
        if self.format == "directory":
            return self._directory_problem()
        if self.files:
            return "lists files, which only a directory-format backup has"
        expected_object = self.expected_object_key
        if self.object_key != expected_object:
            return (
                f"names {self.object_key!r} as its object, not {expected_object!r}: "
                "that object is not this backup's"
            )
        return None

    def _directory_problem(self) -> str | None:
        if self.kind != "database" or self.database is None:
            return "is a directory-format backup of the globals, which the job never makes"
        suffix = object_suffix(self.compression, self.encrypted)
        names: set[str] = set()
        for entry in self.files:
            name, key = entry["name"], entry["key"]
            if not SAFE_FILE_NAME.fullmatch(name) or name in names:
                return f"lists the file {name!r}, not a file name of pg_dump's directory format"
            names.add(name)
            if not is_content_key(key, self.database, suffix):
                return (
                    f"names {key!r} as the object of {name}, not a content object of "
                    f"{self.database} with the suffix {suffix!r}: that object is not this "
                    "backup's to name"
                )
        toc = [f["key"] for f in self.files if f["name"] == "toc.dat"]
        if not toc:
            return "lists no toc.dat: a directory archive without its table of contents"
        if self.object_key != toc[0]:
            return f"names {self.object_key!r} as its object, not its toc.dat's {toc[0]!r}"
        total = sum(f["size_bytes"] for f in self.files)
        if self.size_bytes != total:
            return f"says {self.size_bytes} bytes, its files add up to {total}"
        if self.sha256 != files_digest(self.files):
            return "has a sha256 that is not the digest of its file list"
        return None

    def to_listing(self, destination: str) -> dict[str, Any]:
        """The object ``list --json`` prints."""
        return {
            "format": self.format,
            "new_bytes": self.new_bytes,
            "name": self.name,
            "database": self.database,
            "kind": self.kind,
            "created_at": iso(self.created_at),
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
    without_data = data.get("row_counts", {}).get("without_data", [])
    if not isinstance(without_data, list) or not all(isinstance(t, str) for t in without_data):
        return "row_counts.without_data is not a list of table names"
    args = data.get("pg_dump_args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return "pg_dump_args is not a list of strings"
    if not isinstance(data.get("excluded", {}), dict):
        return "excluded is not an object"
    if not isinstance(data.get("source", {}), dict):
        return "source is not an object"
    if not isinstance(data.get("address_hash", ""), str):
        return "address_hash is not a string"
    problem = _files_problem(data)
    if problem:
        return problem
    for name in ("created_at", "finished_at"):
        try:
            _parse_iso(data[name])
        except ValueError:
            return f"{name} is {data[name]!r}, not an ISO 8601 time"
    return None


def _files_problem(data: dict[str, Any]) -> str | None:
    fmt = data.get("format", "custom")
    if fmt not in FORMATS:
        return f"format is {fmt!r}, not one of {', '.join(FORMATS)}"
    files = data.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        return "files is not a list of objects"
    if fmt == "directory" and not files:
        return "a directory-format manifest lists no files"
    for entry in files:
        for name in FILE_FIELDS:
            if name not in entry:
                return f"a file lacks the field {name!r}"
        if not isinstance(entry["name"], str) or not isinstance(entry["key"], str):
            return f"a file's name or key is not a string: {entry['name']!r}"
        for name in ("plain_bytes", "size_bytes"):
            if not _is_int(entry[name]) or entry[name] < 0:
                return f"{name} of {entry['name']} is {entry[name]!r}, not a byte count"
        if not isinstance(entry["sha256"], str) or not _SHA256.match(entry["sha256"]):
            return f"sha256 of {entry['name']} is {entry['sha256']!r}, not 64 lowercase hex digits"
        offset = entry.get("offset", 0)
        if not _is_int(offset) or offset < 0:
            return f"offset of {entry['name']} is {offset!r}, not a byte offset"
        if not isinstance(entry["new"], bool):
            return f"new of {entry['name']} is {entry['new']!r}, not true or false"
    return None


def files_digest(files: list[dict[str, Any]]) -> str:
    """The manifest-level sha256 of a directory-format backup: its file list, canonical JSON."""
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _invalid(key: str, reason: str) -> IntegrityError:
    return IntegrityError(
        f"manifest {key} is not valid: {reason}",
        hint="it was damaged or edited by hand: list flags it and prune leaves it and its object "
        "alone; restore another backup, and delete both by hand once you know what they are",
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def write(storage: Storage, manifest: Manifest) -> None:
    storage.put(manifest.key, io.BytesIO(manifest.to_json()))


def read(storage: Storage, key: str) -> Manifest:
    """The manifest at ``key``, validated and believed (``IntegrityError`` otherwise)."""
    record = load(storage, key)
    reason = record.problem(key)
    if reason:
        raise untrusted_error(key, reason)
    return record


def load(storage: Storage, key: str) -> Manifest:
    with storage.open(key) as stream:
        return Manifest.from_json(stream.read(), key)


def untrusted_error(key: str, reason: str) -> IntegrityError:
    return IntegrityError(
        f"manifest {key} is not trustworthy: it {reason}",
        hint="a stale or tampered manifest: nothing is restored, verified or deleted through it; "
        "restore another backup ('list' flags this one)",
    )
