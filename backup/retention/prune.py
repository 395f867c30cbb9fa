"""Retention applied to the destinations: the plan for every backup, then the deletions; and the
collection of orphan data objects.

``retention.py`` decides (pure code); this module reads the manifests it decides on and deletes
what it says, manifest first, so a half-done delete never leaves something that looks like a
backup. It runs only after a fully successful backup run, and on ``prune``.

Everything here stays inside the job's ``Scope`` (``job/scope.py``): the folders of the databases
this job is configured for, so two jobs sharing a prefix never delete each other's backups. A
manifest that cannot be believed (``manifest.Rejected``) is never planned: it and the object it
names are left alone, with a warning. A backup is deleted only through its own manifest, and
only its own object (the key scheme's key for that manifest) goes with it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from backup import manifest, retention
from backup.config import Config, RetentionPolicy
from backup.errors import BackupError, StorageError
from backup.job import scope as job_scope
from backup.manifest import Manifest, Rejected, Scope
from backup.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneItem:
    destination: str
    manifest: Manifest
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """Retention decisions on trusted manifests, the manifests left alone, and the orphans."""

    items: list[PruneItem] = field(default_factory=list)
    rejected: list[tuple[str, Rejected]] = field(default_factory=list)
    orphans: list[tuple[str, ObjectInfo]] = field(default_factory=list)


def plan(
    storages: list[Storage],
    policy: RetentionPolicy,
    now: datetime,
    scope: Scope,
    orphan_min_age_s: float | None = None,
) -> Plan:
    """Retention decisions for every database of ``scope`` (and the globals) on every
    destination; with ``orphan_min_age_s``, also the orphan data objects older than that."""
    result = Plan()
    for storage in storages:
        objects = manifest.scoped_objects(storage, scope)
        found = manifest.scan_keys(storage, manifest.manifest_keys_in(objects))
        result.rejected.extend((storage.url, bad) for bad in found.rejected)
        groups: dict[tuple[str, str | None], list[Manifest]] = defaultdict(list)
        for record in found.trusted:
            if scope.covers(record.kind, record.database):
                groups[(record.kind, record.database)].append(record)
        for records in groups.values():
            by_name = {m.name: m for m in records}
            for decision in retention.plan(records, policy, now):
                result.items.append(
                    PruneItem(storage.url, by_name[decision.name], decision.keep, decision.reasons)
                )
        if orphan_min_age_s is not None:
            for info in manifest.orphans(objects, now, orphan_min_age_s):
                result.orphans.append((storage.url, info))
    return result


def apply(storages: list[Storage], planned: Plan, dry_run: bool) -> int:
    """Delete what the plan says (manifest first, so a half-done delete is never a backup);
    return how many backups were deleted. Orphans are removed too (``remove_orphans``)."""
    by_url = {s.url: s for s in storages}
    for destination, bad in planned.rejected:
        log.warning(
            "leaving %s on %s alone (and the object it names): the manifest %s",
            bad.name,
            destination,
            bad.reason,
            extra={"stage": "retention", "destination": destination},
        )
    deleted = 0
    left_alone: set[tuple[str, str]] = set()
    # Each backup's own reasons: for prune --dry-run, and at DEBUG otherwise; then one line per
    # destination in counts (summary).
    level = logging.INFO if dry_run else logging.DEBUG
    for item in planned.items:
        verb = "keep" if item.keep else ("would delete" if dry_run else "delete")
        log.log(
            level,
            "%s %s on %s: %s",
            verb,
            item.manifest.name,
            item.destination,
            "; ".join(item.reasons),
            extra={"stage": "retention", "destination": item.destination},
        )
        if item.keep or dry_run:
            continue
        storage = by_url[item.destination]
        record = item.manifest
        # Only a backup's own object goes with it (scan already refused any other manifest).
        reason = record.problem()
        if reason is not None:
            log.warning(
                "leaving %s on %s alone: the manifest %s", record.name, item.destination, reason
            )
            left_alone.add((item.destination, record.name))
            continue
        try:
            storage.delete([record.key])
            if record.format != "directory":
                storage.delete([record.expected_object_key])
            # A directory-format backup's objects are shared with other backups: its manifest
            # alone goes; its objects no other manifest names are left (not yet collected).
            deleted += 1
        except BackupError as err:
            raise StorageError(
                f"retention could not delete {record.name} on {item.destination}: {err}"
            ) from err
    for destination, items in _by_destination(planned.items).items():
        done = [i for i in items if (destination, i.manifest.name) not in left_alone]
        log.info(
            "retention on %s: %s%s",
            destination,
            summary(done, dry_run),
            f", {len(items) - len(done)} left alone (manifest not believed)"
            if len(done) < len(items)
            else "",
            extra={"stage": "retention", "destination": destination},
        )
    remove_orphans(storages, planned.orphans, dry_run)
    return deleted


def _by_destination(items: list[PruneItem]) -> dict[str, list[PruneItem]]:
    grouped: dict[str, list[PruneItem]] = defaultdict(list)
    for item in items:
        grouped[item.destination].append(item)
    return grouped


def summary(items: list[PruneItem], dry_run: bool = False) -> str:
    """One destination's retention in counts: how many kept and deleted, and why (a kept
    backup counts under every rule that keeps it; a GFS rule's period is left out)."""
    kept = [i for i in items if i.keep]
    gone = [i for i in items if not i.keep]
    text = f"{len(kept)} kept"
    if kept:
        text += f" ({_count_reasons(kept)})"
    if gone:
        text += f", {len(gone)} {'would be deleted' if dry_run else 'deleted'}"
        text += f" ({_count_reasons(gone)})"
    return text


def _count_reasons(items: list[PruneItem]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        for reason in item.reasons:
            rule = reason.split(" ", 1)[0]
            counts[rule if rule in retention.GFS_LABELS else reason] += 1
    return ", ".join(f"{n} {reason}" for reason, n in counts.items())


def remove_orphans(
    storages: list[Storage], orphans: list[tuple[str, ObjectInfo]], dry_run: bool
) -> int:
    """Delete data objects that no manifest commits (a run cut off between the upload and the
    manifest); they are never backups. Returns how many were deleted."""
    by_url = {s.url: s for s in storages}
    removed = 0
    for destination, info in orphans:
        log.info(
            "%s orphan %s on %s: a data object without a manifest, %d bytes, last modified %s",
            "would delete" if dry_run else "delete",
            info.key,
            destination,
            info.size,
            info.modified.isoformat() if info.modified else "?",
            extra={"stage": "cleanup", "destination": destination, "bytes": info.size},
        )
        if dry_run:
            continue
        try:
            by_url[destination].delete([info.key])
            removed += 1
        except BackupError as err:
            raise StorageError(
                f"could not delete the orphan {info.key} on {destination}: {err}"
            ) from err
    return removed


def collect_orphans(
    config: Config, storages: list[Storage], now: datetime, dry_run: bool = False
) -> int:
    """The start-up cleanup of a backup run: orphan data objects of the job's databases older
    than ``config.orphan_min_age_s`` are deleted. Returns how many."""
    scope = job_scope.configured_scope(config)
    removed = 0
    for storage in storages:
        # One destination that cannot be listed or cleaned does not stop the others.
        try:
            objects = manifest.scoped_objects(storage, scope)
            found = [
                (storage.url, o) for o in manifest.orphans(objects, now, config.orphan_min_age_s)
            ]
            removed += remove_orphans([storage], found, dry_run)
        except StorageError as err:
            log.warning("orphan cleanup skipped on %s: %s", storage.url, err.message)
    return removed


def _references(
    storage: Storage, database: str, gone: frozenset[str]
) -> tuple[set[str] | None, list[ObjectInfo]]:
    """What every manifest of ``database`` but those of ``gone`` names (None: one cannot be
    read), and the listing."""
    infos = storage.list(f"{manifest.encode_name(database)}/")
    keys = [k for k in manifest.manifest_keys_in(infos) if k not in gone]
    found = manifest.scan_keys(storage, keys)
    records = [*found.trusted, *(bad.manifest for bad in found.rejected)]
    return manifest.referenced_keys(records), infos


def collect_garbage(
    storages: list[Storage],
    scope: Scope,
    now: datetime,
    min_age_s: float,
    dry_run: bool,
    planned: Plan | None = None,
) -> int:
    """Delete the directory format's content objects that no manifest of their database names
    any more (retention deleted the backups that did) and older than ``min_age_s``. Run only
    under the job's lock, after retention: a backup of this job is never running meanwhile.

    Every manifest of the database counts, trusted or not: one that cannot be read at all
    stops the collection in that database (what it names is unknown). The manifests are read
    twice, before and just before the deletion, so a backup committed meanwhile (by a job
    sharing the folder) keeps what it names. With ``dry_run``, the manifests ``planned`` would
    delete count as deleted. Returns how many objects were (or would be) deleted."""
    removed = 0
    for storage in storages:
        gone = frozenset(
            i.manifest.key
            for i in (planned.items if planned and dry_run else [])
            if not i.keep and i.destination == storage.url
        )
        for database in sorted(scope.databases):
            try:
                referenced, infos = _references(storage, database, gone)
                if referenced is None:
                    log.warning(
                        "content objects of %s on %s not collected: a manifest cannot be read",
                        database,
                        storage.url,
                    )
                    continue
                candidates = manifest.garbage(infos, referenced, database, now, min_age_s)
                if not candidates:
                    continue
                again, _ = _references(storage, database, gone)
                if again is None:
                    continue
                doomed = [c for c in candidates if c.key not in again]
                for info in doomed:
                    log.info(
                        "%s %s on %s: no backup names it any more, %d bytes",
                        "would delete" if dry_run else "delete",
                        info.key,
                        storage.url,
                        info.size,
                        extra={"stage": "retention", "destination": storage.url},
                    )
                if not dry_run:
                    storage.delete([c.key for c in doomed])
                removed += len(doomed)
            except StorageError as err:
                log.warning(
                    "content objects of %s on %s not collected: %s",
                    database,
                    storage.url,
                    err.message,
                )
    return removed
