"""Which objects a directory-format backup may reuse on a destination: nothing on faith.

An object is reused only when a trusted manifest of the database names it and the listing shows
it with the recorded size and fingerprint (``ObjectInfo.fingerprint`` changes whenever the
object is written again, so a rewrite that flipped a byte is seen without a read). One whose
manifest recorded no fingerprint (an older job's) or whose fingerprint changed is a suspect:
read back in full (``still_whole``) before any reuse, and stored anew when its sha256 no longer
matches. ``recheck``, just before the commit, lists every object the backup names again: one
gone or written again since it was checked fails the destination.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from backup import manifest
from backup.config import Config
from backup.dirformat import damage
from backup.dirformat.address import ADDRESS_HASH, address_key
from backup.errors import BackupError, Interrupted, ObjectNotFound, StorageError
from backup.storage import Storage

log = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Stored:
    """What a trusted manifest recorded of an object, and the backup that recorded it."""

    size: int
    sha256: str
    fingerprint: str | None
    backup: str


@dataclass
class Target:
    """One destination during a run: its address key, what it holds already (``known``: whole
    and unchanged; ``suspect``: to read back before any reuse), what it got."""

    storage: Storage
    key: bytes = b""
    known: dict[str, Stored] = field(default_factory=dict)
    suspect: dict[str, Stored] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    error: BackupError | None = None
    damaged: dict[str, str] = field(default_factory=dict)
    """Objects ``verify`` recorded as damaged (content key -> its record): never reused."""
    stale_records: list[str] = field(default_factory=list)
    """Records of damaged objects that are gone (nothing left to heal): removed at the commit."""
    packs: dict[str, int] = field(default_factory=dict)
    """The packs this run stored here (``dump/packs.py``): key -> stored bytes."""


def prepare(target: Target, config: Config, database: str, suffix: str) -> None:
    """The address key, and the objects committed backups of ``database`` name: those the
    listing shows with the recorded size and fingerprint are reused, never uploaded again;
    those with the recorded size but no or another fingerprint are read back first; those
    ``verify`` recorded as damaged (``damage.recorded``) are never reused: stored anew at the
    same address, which heals the older backups that name them."""
    storage = target.storage
    target.key = address_key(storage, database, config.dump, config.codec)
    found = manifest.scan(storage, scope=manifest.Scope(frozenset({database})))
    recorded: dict[str, Stored] = {}
    for record in reversed(found.trusted):  # newest last: its record of an object wins
        # an address is matched only under the hash that made it: a manifest whose objects
        # another hash named (or that claims so) offers nothing to reuse
        if (
            record.format == "directory"
            and record.database == database
            and record.keyed_hash == ADDRESS_HASH
        ):
            for entry in record.files:
                if "offset" in entry:  # a file inside a pack: packs are never reused
                    continue
                recorded[entry["key"]] = Stored(
                    entry["size_bytes"], entry["sha256"], entry.get("fingerprint"), record.name
                )
    present = {o.key: o for o in storage.list(manifest.objects_prefix(database))}
    damaged = damage.recorded(storage, database)
    target.damaged = {k: v for k, v in damaged.items() if k in present}
    target.stale_records = [v for k, v in damaged.items() if k not in present]
    for key, stored in recorded.items():
        info = present.get(key)
        if not key.endswith(suffix) or info is None:
            continue
        if key in target.damaged:
            log.warning(
                "%s: %s was found damaged by verify: it is stored anew, not reused",
                storage.url,
                key,
                extra={"stage": "upload", "destination": storage.url},
            )
        elif info.size != stored.size:
            log_damaged(storage, key, stored, f"{info.size} bytes, not {stored.size}")
        elif stored.fingerprint and info.fingerprint == stored.fingerprint:
            # (an empty fingerprint, from a store that gives none, proves nothing: read back)
            target.known[key] = stored
        else:
            target.suspect[key] = replace(stored, fingerprint=info.fingerprint)


def log_damaged(storage: Storage, key: str, stored: Stored, what: str) -> None:
    log.error(
        "%s: the stored object %s is damaged (%s, as backup %s recorded it): it is stored "
        "anew; the backups that name it cannot restore that file: run verify on them",
        storage.url,
        key,
        what,
        stored.backup,
        extra={"stage": "upload", "destination": storage.url},
    )


def still_whole(storage: Storage, key: str, stored: Stored, stop: threading.Event) -> bool:
    """Reads the object back: its size and sha256 are still those recorded (an object that
    cannot be read is not proven whole)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with storage.open(key) as stream:
            while chunk := stream.read(READ_BYTES):
                if stop.is_set():
                    raise Interrupted("the directory-format backup was stopped")
                digest.update(chunk)
                size += len(chunk)
    except ObjectNotFound:
        return False
    except Interrupted:
        raise
    except BackupError as err:
        # Not proven whole is not reused: the upload that follows fails this destination alone
        # if the store is really down, where an error raised here would stop every destination.
        log.warning("%s: cannot read %s back (%s): it is stored anew", storage.url, key, err)
        return False
    if size == stored.size and digest.hexdigest() == stored.sha256:
        return True
    log_damaged(storage, key, stored, "its sha256 differs from the one recorded")
    return False


def recheck(target: Target, database: str) -> None:
    """Every object the backup names on ``target`` is still there, whole, and (if reused) not
    written again since it was checked; else the target fails (no manifest there). Each entry
    gets the listing's fingerprint. A listing that fails fails this destination alone."""
    try:
        listed = target.storage.list(manifest.objects_prefix(database))
    except BackupError as err:
        target.error = err
        return
    present = {o.key: o for o in listed}
    gone = []
    for entry in target.files:
        info = present.get(entry["key"])
        size = target.packs.get(entry["key"], entry["size_bytes"])
        if info is None or info.size != size:
            gone.append(entry)
            continue
        # A reused object (its fingerprint known when it was checked) must not have been
        # written since: a rewrite between the check and the commit is not trusted either.
        checked = target.known.get(entry["key"])
        if checked is not None and checked.fingerprint not in (None, info.fingerprint):
            gone.append(entry)
        else:
            entry["fingerprint"] = info.fingerprint
    if gone:
        target.error = StorageError(
            f"{target.storage.url}: {len(gone)} stored file(s) this backup reuses are gone "
            f"or were written again ({gone[0]['key']}) while the backup ran",
            hint="run the backup again: it stores them anew",
        )
