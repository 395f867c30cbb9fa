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
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from backup.errors import IntegrityError, ObjectNotFound, StorageError
from backup.storage import Storage

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
GLOBALS_DIR = "_globals"
STATE_DIR = "_state"
MANIFEST_SUFFIX = ".manifest.json"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_NAME = re.compile(r"^(?P<db>.+)-(?P<ts>\d{8}T\d{6}Z)$")


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
        try:
            data = json.loads(raw)
            if data.get("format_version", 0) > FORMAT_VERSION:
                raise IntegrityError(
                    f"manifest {key} has format {data['format_version']}, newer than this job",
                    hint="upgrade pgbackup-job to read it",
                )
            data["created_at"] = _parse_iso(data["created_at"])
            data["finished_at"] = _parse_iso(data["finished_at"])
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in data.items() if k in known})
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise IntegrityError(f"manifest {key} is not valid: {err}") from err

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


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def write(storage: Storage, manifest: Manifest) -> None:
    storage.put(manifest.key, io.BytesIO(manifest.to_json()))


def read(storage: Storage, key: str) -> Manifest:
    with storage.open(key) as stream:
        return Manifest.from_json(stream.read(), key)


def manifest_keys(storage: Storage, globals_only: bool = False) -> list[str]:
    """Every manifest key of database backups (or of globals), newest first by key timestamp."""
    prefix = f"{GLOBALS_DIR}/" if globals_only else ""
    keys = []
    for info in storage.list(prefix):
        key = info.key
        if not key.endswith(MANIFEST_SUFFIX) or key.count("/") != 1:
            continue
        top = key.split("/", 1)[0]
        if top == STATE_DIR or (top == GLOBALS_DIR) != globals_only:
            continue
        keys.append(key)
    return sorted(keys, key=_key_timestamp, reverse=True)


def _key_timestamp(key: str) -> str:
    stem = key.rsplit("/", 1)[-1].removesuffix(MANIFEST_SUFFIX)
    match = _NAME.match(stem)
    return match["ts"] if match else ""


def read_all(storage: Storage, globals_only: bool = False) -> list[Manifest]:
    """Every readable manifest, newest first. Unreadable ones are skipped with a warning:
    a damaged manifest must not hide the other backups."""
    manifests = []
    for key in manifest_keys(storage, globals_only):
        try:
            manifests.append(read(storage, key))
        except ObjectNotFound:
            continue  # deleted between list and read (a concurrent prune)
        except (IntegrityError, StorageError) as err:
            log.warning("skipping manifest %s on %s: %s", key, storage.url, err)
    return sorted(manifests, key=lambda m: m.created_at, reverse=True)
