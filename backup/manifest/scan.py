"""What a destination holds, judged: trusted manifests, rejected ones (with the reason), the
job's folders (``Scope``), and data objects that no manifest commits (orphans).

A damaged or lying manifest never hides the other backups, and is never taken for a backup:
``list`` flags it, restore and verify refuse it (exit 5), retention leaves it and its object
alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from backup.errors import IntegrityError, ObjectNotFound, StorageError
from backup.manifest.record import Manifest, iso, load
from backup.manifest.scheme import (
    GLOBALS_DIR,
    MANIFEST_SUFFIX,
    STATE_DIR,
    encode_name,
    key_timestamp,
    manifest_key_of_object,
    objects_prefix,
    parse_timestamp,
)
from backup.storage import ObjectInfo, Storage
from backup.storage.retry import each

log = logging.getLogger(__name__)


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
        stamp = key_timestamp(self.key)
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
            "created_at": iso(created) if created else None,
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
    """Every object in the scope's folders (one listing per folder, never the whole prefix;
    a few folders listed at once: ``retry.each``)."""
    listings = each(scope.folders(), lambda folder: storage.list(f"{folder}/"))
    return [info for listing in listings for info in listing]


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
    return sorted(keys, key=key_timestamp, reverse=True)


def manifest_keys(storage: Storage, globals_only: bool = False) -> list[str]:
    """Every manifest key of database backups (or of globals), newest first by key timestamp."""
    prefix = f"{GLOBALS_DIR}/" if globals_only else ""
    return manifest_keys_in(storage.list(prefix), globals_only)


def scan_keys(storage: Storage, keys: Iterable[str]) -> Scan:
    """Read and judge every manifest in ``keys``. A damaged or lying manifest does not hide
    the others: it is returned as ``Rejected`` with the reason."""
    trusted: list[Manifest] = []
    rejected: list[Rejected] = []
    # A few manifests read at once (``retry.each``): a run over many databases reads hundreds.
    keys = list(keys)
    for key, read in zip(keys, each(keys, lambda key: _read(storage, key)), strict=True):
        if read is None or isinstance(read, Rejected):
            rejected.extend([read] if read else [])
            continue
        reason = read.problem(key)
        if reason:
            rejected.append(Rejected(key, reason, read))
        else:
            trusted.append(read)
    trusted.sort(key=lambda m: m.created_at, reverse=True)
    return Scan(trusted, rejected)


def _read(storage: Storage, key: str) -> Manifest | Rejected | None:
    """The manifest at ``key``; Rejected when it cannot be read or believed; None when it is
    gone (deleted between list and read: a concurrent prune)."""
    try:
        return load(storage, key)
    except ObjectNotFound:
        return None
    except IntegrityError as err:
        return Rejected(key, err.message.removeprefix(f"manifest {key} "))
    except StorageError as err:
        return Rejected(key, f"cannot be read: {err.message}")


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


def referenced_keys(records: Iterable[Manifest | None]) -> set[str] | None:
    """Every object the manifests name (a directory backup's files, any backup's object), or
    None when one of them could not be read: then nobody knows what it names, and no content
    object may be taken for garbage."""
    keys: set[str] = set()
    for record in records:
        if record is None:
            return None
        keys.add(record.object_key)
        keys.update(entry["key"] for entry in record.files)
    return keys


def garbage(
    infos: Iterable[ObjectInfo],
    referenced: set[str],
    database: str,
    now: datetime,
    min_age_s: float,
) -> list[ObjectInfo]:
    """Content objects of ``database`` among ``infos`` that no manifest names (``referenced``)
    and that are older than ``min_age_s`` (longer than any run: never the upload of a backup
    whose manifest is still to come). An object whose age is unknown is left alone."""
    prefix = objects_prefix(database)
    return sorted(
        (
            info
            for info in infos
            if info.key.startswith(prefix)
            and info.key not in referenced
            and info.modified is not None
            and (now - info.modified).total_seconds() > min_age_s
        ),
        key=lambda o: o.key,
    )
