"""A damaged or missing content object of a directory-format backup: named, and remembered.

Named: every integrity failure of one file says the object's key, pg_dump's file (``4123.dat``)
and what it holds (the table, from the archive's own ``toc.dat``); a missing object is exit 5
too (the backup is damaged, not absent) and says which other backups name the same object.
"or the key is wrong" is said only of an encrypted backup.

Remembered: ``verify`` records each object it found damaged on that destination, as a small
marker ``<database>/_state/damaged/<64 hex>`` (JSON: the object's key, the backup verified, the
reason, when). The next backup of the database never reuses a recorded object: it stores it
anew at the same address (which heals the older backups that name it), then removes the
marker (``reuse.prepare`` reads them, ``clear`` removes them after the commit).
"""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import UTC, datetime

from backup import manifest
from backup.errors import BackupError, IntegrityError
from backup.manifest import Manifest
from backup.storage import Storage

log = logging.getLogger(__name__)

DAMAGED_DIR = "_state/damaged"
_LIST_LINE = re.compile(r"^(?P<id>\d+); \d+ \d+ (?P<what>.+?)\s*$")


class DamagedFile(IntegrityError):
    """One file of a directory-format backup failed its check, or its object is missing."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        key: str = "",
        file: str = "",
        missing: bool = False,
    ) -> None:
        super().__init__(message, hint)
        self.key = key
        self.file = file
        self.missing = missing


def hint_for(m: Manifest) -> str:
    """What to do about a damaged object of ``m``: the key is a suspect only when encrypted."""
    if m.encrypted:
        return (
            "the stored object is damaged or the age key is wrong: try another backup or "
            "destination; 'verify' records it so that the next backup stores it anew"
        )
    return (
        "the stored object is damaged: try another backup or destination; 'verify' records it "
        "so that the next backup stores it anew"
    )


def what_file_holds(listing: str, file: str) -> str:
    """What pg_dump's ``file`` holds, from ``pg_restore --list`` of the folder's toc.dat:
    ``TABLE DATA public orders`` for ``4123.dat``."""
    if file == "toc.dat":
        return "the archive's table of contents"
    if file == "blobs.toc" or file.startswith("blobs_"):
        return "the list of large objects"
    if file.startswith("blob_"):
        return f"large object {file.removeprefix('blob_').split('.', 1)[0]}"
    dump_id = file.split(".", 1)[0]
    for line in listing.splitlines():
        match = _LIST_LINE.match(line)
        if match and match["id"] == dump_id:
            words = match["what"].split(" ")
            return " ".join(words[:-1]) if len(words) > 3 else match["what"]  # without the owner
    return "an entry the table of contents does not name"


def others_naming(storage: Storage, m: Manifest, key: str) -> list[str]:
    """The other backups of ``m``'s database on ``storage`` whose manifests name ``key``."""
    try:
        found = manifest.scan(storage, scope=manifest.Scope(frozenset({m.database or ""})))
    except BackupError as err:
        log.warning("cannot list the backups that name %s: %s", key, err)
        return []
    return sorted(
        record.name
        for record in found.trusted
        if record.name != m.name and any(f.get("key") == key for f in record.files)
    )


def marker_key(database: str, key: str) -> str:
    return f"{manifest.encode_name(database)}/{DAMAGED_DIR}/{key.rsplit('/', 1)[-1]}"


def record(storage: Storage, m: Manifest, err: DamagedFile) -> None:
    """Remember on ``storage`` that ``err.key`` is damaged (never raises: a verify run with
    read-only credentials still reports the damage, and says the record failed)."""
    if not err.key or m.database is None:
        return
    body = {
        "key": err.key,
        "file": err.file,
        "backup": m.name,
        "reason": err.message[:500],
        "missing": err.missing,
        "found_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    where = marker_key(m.database, err.key)
    try:
        storage.put(where, io.BytesIO(json.dumps(body).encode()))
    except BackupError as err_put:
        log.warning(
            "%s: cannot record %s as damaged (%s): the next backup reuses it only if its "
            "listing changed",
            storage.url,
            err.key,
            err_put,
        )
        return
    log.info(
        "%s: recorded %s as damaged (%s): the next backup stores it anew",
        storage.url,
        err.key,
        where,
    )


def recorded(storage: Storage, database: str) -> dict[str, str]:
    """Content keys ``verify`` recorded as damaged in ``database`` -> the marker's key."""
    prefix = f"{manifest.encode_name(database)}/{DAMAGED_DIR}/"
    found = {}
    objects = manifest.objects_prefix(database)
    for info in storage.list(prefix):
        name = info.key.removeprefix(prefix)
        if "/" in name or not name:
            continue
        found[f"{objects}{name[:2]}/{name}"] = info.key
    return found


def clear(storage: Storage, markers: list[str]) -> None:
    """Remove the markers of objects this backup stored anew (committed)."""
    if not markers:
        return
    try:
        storage.delete(markers)
    except BackupError as err:
        log.warning("%s: could not remove the damage records %s: %s", storage.url, markers, err)
