"""What backups exist: listing, choosing one by name or ``latest``, retention and freshness.

Everything here reads manifests only: a dump without a manifest is not a backup.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from backup import manifest, retention
from backup.config import RetentionPolicy
from backup.errors import BackupError, ConfigError, StorageError
from backup.manifest import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One complete backup on one destination."""

    manifest: Manifest
    destination: str


def list_entries(targets: list, globals_only: bool = False) -> list[Entry]:
    """Every complete backup on every target, newest first."""
    entries = []
    for target in targets:
        for record in manifest.read_all(target.storage, globals_only):
            entries.append(Entry(record, target.url))
    return sorted(entries, key=lambda e: e.manifest.created_at, reverse=True)


def list_first_answering(targets: list, globals_only: bool = False) -> list[Entry]:
    """The backups on the first destination that answers (``list``'s default); a destination
    that cannot be listed is skipped with a warning, and all failing is a storage error."""
    errors = []
    for target in targets:
        try:
            return list_entries([target], globals_only)
        except StorageError as err:
            log.warning("cannot list %s (%s): trying the next destination", target.url, err)
            errors.append(f"{target.url}: {err}")
    raise StorageError("no destination could be listed: " + "; ".join(errors))


def resolve(
    targets: list,
    name: str,
    database: str | None,
    default_database: str | None,
    globals_only: bool = False,
) -> list[Entry]:
    """The backup called ``name`` (or the ``latest``), one entry per destination that has it,
    in destination order. A name that matches nothing is a usage error (exit 2)."""
    found: list[Entry] = []
    errors: list[str] = []
    for target in targets:
        try:
            records = manifest.read_all(target.storage, globals_only)
        except StorageError as err:
            log.warning("cannot list %s: %s", target.url, err)
            errors.append(f"{target.url}: {err}")
            continue
        if name == "latest":
            db = database or default_database or _only_database(records)
            chosen = [m for m in records if globals_only or m.database == db]
            if chosen:
                found.append(Entry(chosen[0], target.url))
        else:
            found.extend(Entry(m, target.url) for m in records if m.name == name)
    if not found:
        if errors and len(errors) == len(targets):
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


def _only_database(records: list[Manifest]) -> str | None:
    names = {m.database for m in records}
    if len(names) > 1:
        raise ConfigError(
            f"backups of several databases exist ({', '.join(sorted(n or '' for n in names))})",
            hint="say which one with --database or PGDATABASE",
        )
    return next(iter(names), None)


def format_table(entries: list[Entry], retention_days: int) -> str:
    """The seed's table: name, size in MB, date, then the total and the retention setting."""
    width = max([len(e.manifest.name) for e in entries] + [30]) + 2
    rule = "=" * (width + 60)
    lines = [
        rule,
        "AVAILABLE BACKUPS",
        rule,
        f"{'Name':<{width}}{'Size (MB)':>10}  {'Date (UTC)':<20} {'Enc':<4}Destination",
        "-" * (width + 60),
    ]
    for entry in entries:
        m = entry.manifest
        lines.append(
            f"{m.name:<{width}}{m.size_bytes / 1e6:>10.2f}  "
            f"{m.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} "
            f"{'age' if m.encrypted else '-':<4}{entry.destination}"
        )
    lines += [
        rule,
        f"Total: {len(entries)} backup{'s' if len(entries) != 1 else ''}",
        f"Retention: {retention_days} days",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class PruneItem:
    destination: str
    manifest: Manifest
    keep: bool
    reasons: tuple[str, ...]


def plan_prune(targets: list, policy: RetentionPolicy, now: datetime) -> list[PruneItem]:
    """Retention decisions for every database (and the globals) on every destination."""
    items: list[PruneItem] = []
    for target in targets:
        groups: dict[tuple[str, str | None], list[Manifest]] = defaultdict(list)
        for globals_only in (False, True):
            for record in manifest.read_all(target.storage, globals_only):
                groups[(record.kind, record.database)].append(record)
        for records in groups.values():
            by_name = {m.name: m for m in records}
            for decision in retention.plan(records, policy, now):
                items.append(
                    PruneItem(target.url, by_name[decision.name], decision.keep, decision.reasons)
                )
    return items


def apply_prune(targets: list, items: list[PruneItem], dry_run: bool) -> int:
    """Delete what the plan says (manifest first, so a half-done delete is never a backup)."""
    storages = {t.url: t.storage for t in targets}
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
        storage = storages[item.destination]
        try:
            storage.delete([item.manifest.key])
            storage.delete([item.manifest.object_key])
            deleted += 1
        except BackupError as err:
            raise StorageError(
                f"retention could not delete {item.manifest.name} on {item.destination}: {err}"
            ) from err
    return deleted
