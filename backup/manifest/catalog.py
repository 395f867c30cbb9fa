"""What backups exist: listing them, and choosing one by name or ``latest``.

Everything here reads manifests only: a dump without a manifest is not a backup. A manifest that
cannot be believed (``manifest.Rejected``: invalid, or not about its own object) is never a
backup either: ``list`` shows it flagged, and choosing it for restore or verify is an integrity
error (exit 5), as is ``latest`` when the newest manifest of the database is such a one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backup import manifest
from backup.errors import ConfigError, IntegrityError, StorageError
from backup.manifest import Manifest, Rejected
from backup.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One complete backup on one destination."""

    manifest: Manifest
    destination: str


@dataclass(frozen=True)
class Flagged:
    """A manifest on one destination that is not believed, and why."""

    rejected: Rejected
    destination: str


@dataclass(frozen=True)
class Usage:
    """What one destination holds under its prefix, from one listing of it: every object
    (backups of databases and globals, manifests, the run history, leftovers without a
    manifest), or why it could not be listed. Unfinished multipart uploads and large files are
    not listed objects and are not counted."""

    destination: str
    objects: int = 0
    stored_bytes: int = 0
    backups: int = 0
    """Manifests under the prefix: backups of databases and of globals, believed or not."""
    globals_backups: int = 0
    error: str | None = None

    @classmethod
    def of(cls, destination: str, infos: list[ObjectInfo]) -> Usage:
        keys = manifest.manifest_keys_in(infos, None)
        return cls(
            destination=destination,
            objects=len(infos),
            stored_bytes=sum(info.size for info in infos),
            backups=len(keys),
            globals_backups=sum(1 for key in keys if key.startswith(f"{manifest.GLOBALS_DIR}/")),
        )


@dataclass(frozen=True)
class Listing:
    entries: list[Entry]
    flagged: list[Flagged]
    usage: dict[str, Usage] = field(default_factory=dict)
    """Per destination URL, what it holds, when the listing went over its whole prefix (the
    database backups' listing does: no request more), or why it could not be listed."""


def list_entries(storages: list[Storage], globals_only: bool = False) -> list[Entry]:
    """Every complete backup on every destination, newest first."""
    return list_all(storages, globals_only).entries


def list_all(storages: list[Storage], globals_only: bool = False) -> Listing:
    """Every complete backup on every destination, newest first, and the flagged manifests."""
    entries: list[Entry] = []
    flagged: list[Flagged] = []
    usage: dict[str, Usage] = {}
    for storage in storages:
        if globals_only:
            found = manifest.scan(storage, globals_only=True)
        else:
            # The database backups' manifests are found by listing the whole prefix: that one
            # listing also says what the destination holds.
            infos = storage.list("")
            found = manifest.scan_keys(storage, manifest.manifest_keys_in(infos, False))
            usage[storage.url] = Usage.of(storage.url, infos)
        entries.extend(Entry(record, storage.url) for record in found.trusted)
        flagged.extend(Flagged(bad, storage.url) for bad in found.rejected)
    entries.sort(key=lambda e: e.manifest.created_at, reverse=True)
    return Listing(entries, flagged, usage)


def list_first_answering(storages: list[Storage], globals_only: bool = False) -> Listing:
    """The backups on the first destination that answers (``list``'s default); a destination
    that cannot be listed is skipped with a warning (and its ``usage`` says why), and all
    failing is a storage error."""
    errors = []
    failed: dict[str, Usage] = {}
    for storage in storages:
        try:
            listing = list_all([storage], globals_only)
        except StorageError as err:
            log.warning("cannot list %s (%s): trying the next destination", storage.url, err)
            errors.append(f"{storage.url}: {err}")
            failed[storage.url] = Usage(storage.url, error=str(err))
            continue
        return Listing(listing.entries, listing.flagged, {**failed, **listing.usage})
    raise StorageError("no destination could be listed: " + "; ".join(errors))


def usage(storage: Storage) -> Usage:
    """What ``storage`` holds under its prefix (one listing), or why it could not be listed."""
    try:
        return Usage.of(storage.url, storage.list(""))
    except StorageError as err:
        log.warning("cannot list %s to measure it: %s", storage.url, err)
        return Usage(storage.url, error=str(err))


def resolve(
    storages: list[Storage],
    name: str,
    database: str | None,
    default_database: str | None,
    globals_only: bool = False,
) -> list[Entry]:
    """The backup called ``name`` (or the ``latest``), one entry per destination that has it,
    in destination order. A name that matches nothing is a usage error (exit 2); one that
    matches only manifests that are not believed is an integrity error (exit 5)."""
    found: list[Entry] = []
    refused: list[Flagged] = []
    errors: list[str] = []
    for storage in storages:
        try:
            scan = manifest.scan(storage, globals_only)
        except StorageError as err:
            log.warning("cannot list %s: %s", storage.url, err)
            errors.append(f"{storage.url}: {err}")
            continue
        records = scan.trusted
        if name == "latest":
            db = database or default_database or _only_database(records, scan.rejected)
            chosen = _not_future(
                [m for m in records if globals_only or m.database == db], storage.url
            )
            newest = chosen[0].created_at if chosen else None
            bad = [
                r
                for r in scan.rejected
                if (globals_only or r.database == db)
                and _newer(r.created_at, newest)
                and not (r.created_at and manifest.future_dated(r.created_at, datetime.now(UTC)))
            ]
            if bad:
                # The newest backup here is not believed: never fall back silently to an older one.
                refused.extend(Flagged(r, storage.url) for r in bad)
            elif chosen:
                found.append(Entry(chosen[0], storage.url))
        else:
            found.extend(Entry(m, storage.url) for m in records if m.name == name)
            refused.extend(
                Flagged(r, storage.url)
                for r in scan.rejected
                if name in (r.name, r.manifest.name if r.manifest else None)
            )
    if refused and _refusal_wins(found, refused, latest=name == "latest"):
        first = refused[0]
        raise IntegrityError(
            f"{'the newest backup' if name == 'latest' else 'the backup'} "
            f"{first.rejected.name} on {first.destination} is not trustworthy: the manifest "
            f"{first.rejected.reason}",
            hint="nothing was read through it; 'list' flags it: restore or verify an older "
            "backup by name",
        )
    for flagged in refused:
        log.warning(
            "ignoring the manifest %s on %s: %s",
            flagged.rejected.key,
            flagged.destination,
            flagged.rejected.reason,
        )
    if not found:
        if errors and len(errors) == len(storages):
            raise StorageError("no destination could be read: " + "; ".join(errors))
        what = "globals backup" if globals_only else "complete backup"
        if name == "latest":
            db = database or default_database
            raise ConfigError(
                f"no {what} found" + (f" of database {db!r}" if db else ""),
                hint="run 'list' to see the backups, or pass --database",
            )
        raise ConfigError(f"no {what} named {name!r}", hint="run 'list' to see the names")
    if name == "latest" and len(found) > 1:
        # The same backup on several destinations: prefer the newest, in destination order.
        newest = max(e.manifest.created_at for e in found)
        found = [e for e in found if e.manifest.created_at == newest] + [
            e for e in found if e.manifest.created_at != newest
        ]
    return found


def _not_future(records: list[Manifest], destination: str) -> list[Manifest]:
    """``latest`` is the newest backup NOT dated in the future (more than FUTURE_TOLERANCE
    ahead: a skewed clock or a planted manifest): such a one is restorable by its name only."""
    now = datetime.now(UTC)
    future = [m for m in records if manifest.future_dated(m.created_at, now)]
    for m in future:
        log.warning(
            "%s on %s is dated in the future (%s): 'latest' skips it; name it to use it",
            m.name,
            destination,
            f"{m.created_at:%Y-%m-%d %H:%M:%S} UTC",
        )
    return [m for m in records if m not in future]


def _refusal_wins(found: list[Entry], refused: list[Flagged], latest: bool) -> bool:
    """A name found only in manifests that are not believed, or a ``latest`` whose newest
    manifest anywhere is one: an integrity error rather than another (older) backup."""
    if not found:
        return True
    if not latest:
        return False
    newest_found = max(e.manifest.created_at for e in found)
    return any(_newer(f.rejected.created_at, newest_found, strict=True) for f in refused)


def _newer(moment: datetime | None, than: datetime | None, strict: bool = False) -> bool:
    """A rejected manifest dated by its key at ``moment`` is newer than ``than``."""
    if moment is None:
        return False
    return than is None or moment > than or (not strict and moment == than)


def _only_database(records: list[Manifest], rejected: list[Rejected]) -> str | None:
    names = {m.database for m in records} | {r.database for r in rejected}
    if len(names) > 1:
        raise ConfigError(
            f"backups of several databases exist ({', '.join(sorted(n or '' for n in names))})",
            hint="say which one with --database or PGDATABASE",
        )
    return next(iter(names), None)


NAME_ATTEMPTS = 5


def unused_moment(storages: list[Storage], database: str | None) -> datetime:
    """The moment a backup is named after: now, or the next second where no destination holds
    an object of that name yet.

    Names have one-second resolution. A run that starts in the second its predecessor's backup
    was named (a small database, a run started by hand after cron's), or on a machine whose
    clock is behind another's, would otherwise upload under a committed backup's keys: its
    object would replace that backup's before its own manifest replaces the old one, and a run
    that then fails leaves the old manifest over new bytes. A destination that cannot be listed
    here is left to the upload, which reports it as usual. Raises ``StorageError`` when the
    next ``NAME_ATTEMPTS`` seconds are all taken (backups named in this machine's future)."""
    for _ in range(NAME_ATTEMPTS):
        moment = datetime.now(UTC).replace(microsecond=0)
        stem = manifest.manifest_key(database, moment).removesuffix(manifest.MANIFEST_SUFFIX)
        taken = [s.url for s in storages if _holds(s, f"{stem}.")]
        if not taken:
            return moment
        log.info(
            "a backup named %s already exists in %s: naming this one a second later",
            stem.rsplit("/", 1)[-1],
            ", ".join(taken),
        )
        time.sleep(max(0.0, (moment.timestamp() + 1) - time.time()) + 0.01)
    raise StorageError(
        f"backups named for each of the next {NAME_ATTEMPTS} seconds already exist "
        f"({stem.rsplit('/', 1)[-1]} and before): refusing to overwrite them",
        hint="is this machine's clock behind the one that wrote them? check NTP",
    )


def _holds(storage: Storage, prefix: str) -> bool:
    try:
        return bool(storage.list(prefix))
    except StorageError as err:
        log.debug("cannot list %s before naming the backup: %s", storage.url, err)
        return False
