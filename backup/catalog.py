"""What backups exist: listing them, and choosing one by name or ``latest``.

Everything here reads manifests only: a dump without a manifest is not a backup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backup import manifest
from backup.errors import ConfigError, StorageError
from backup.manifest import Manifest
from backup.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One complete backup on one destination."""

    manifest: Manifest
    destination: str


def list_entries(storages: list[Storage], globals_only: bool = False) -> list[Entry]:
    """Every complete backup on every destination, newest first."""
    entries = []
    for storage in storages:
        for record in manifest.read_all(storage, globals_only):
            entries.append(Entry(record, storage.url))
    return sorted(entries, key=lambda e: e.manifest.created_at, reverse=True)


def list_first_answering(storages: list[Storage], globals_only: bool = False) -> list[Entry]:
    """The backups on the first destination that answers (``list``'s default); a destination
    that cannot be listed is skipped with a warning, and all failing is a storage error."""
    errors = []
    for storage in storages:
        try:
            return list_entries([storage], globals_only)
        except StorageError as err:
            log.warning("cannot list %s (%s): trying the next destination", storage.url, err)
            errors.append(f"{storage.url}: {err}")
    raise StorageError("no destination could be listed: " + "; ".join(errors))


def resolve(
    storages: list[Storage],
    name: str,
    database: str | None,
    default_database: str | None,
    globals_only: bool = False,
) -> list[Entry]:
    """The backup called ``name`` (or the ``latest``), one entry per destination that has it,
    in destination order. A name that matches nothing is a usage error (exit 2)."""
    found: list[Entry] = []
    errors: list[str] = []
    for storage in storages:
        try:
            records = manifest.read_all(storage, globals_only)
        except StorageError as err:
            log.warning("cannot list %s: %s", storage.url, err)
            errors.append(f"{storage.url}: {err}")
            continue
        if name == "latest":
            db = database or default_database or _only_database(records)
            chosen = [m for m in records if globals_only or m.database == db]
            if chosen:
                found.append(Entry(chosen[0], storage.url))
        else:
            found.extend(Entry(m, storage.url) for m in records if m.name == name)
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


def _only_database(records: list[Manifest]) -> str | None:
    names = {m.database for m in records}
    if len(names) > 1:
        raise ConfigError(
            f"backups of several databases exist ({', '.join(sorted(n or '' for n in names))})",
            hint="say which one with --database or PGDATABASE",
        )
    return next(iter(names), None)
