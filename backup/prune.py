"""Retention applied to the destinations: the plan for every backup, then the deletions.

``retention.py`` decides (pure code); this module reads the manifests it decides on and deletes
what it says, manifest first, so a half-done delete never leaves something that looks like a
backup. It runs only after a fully successful backup run, and on ``prune``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from backup import manifest, retention
from backup.config import RetentionPolicy
from backup.errors import BackupError, StorageError
from backup.manifest import Manifest
from backup.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneItem:
    destination: str
    manifest: Manifest
    keep: bool
    reasons: tuple[str, ...]


def plan(storages: list[Storage], policy: RetentionPolicy, now: datetime) -> list[PruneItem]:
    """Retention decisions for every database (and the globals) on every destination."""
    items: list[PruneItem] = []
    for storage in storages:
        groups: dict[tuple[str, str | None], list[Manifest]] = defaultdict(list)
        for globals_only in (False, True):
            for record in manifest.read_all(storage, globals_only):
                groups[(record.kind, record.database)].append(record)
        for records in groups.values():
            by_name = {m.name: m for m in records}
            for decision in retention.plan(records, policy, now):
                items.append(
                    PruneItem(storage.url, by_name[decision.name], decision.keep, decision.reasons)
                )
    return items


def apply(storages: list[Storage], items: list[PruneItem], dry_run: bool) -> int:
    """Delete what the plan says (manifest first, so a half-done delete is never a backup);
    return how many backups were deleted."""
    by_url = {s.url: s for s in storages}
    deleted = 0
    for item in items:
        verb = "keep" if item.keep else ("would delete" if dry_run else "delete")
        log.info(
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
        try:
            storage.delete([item.manifest.key])
            storage.delete([item.manifest.object_key])
            deleted += 1
        except BackupError as err:
            raise StorageError(
                f"retention could not delete {item.manifest.name} on {item.destination}: {err}"
            ) from err
    return deleted
