"""One function per CLI command: wire the configuration to the jobs and print the result."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from backup import archive, catalog, jobs, report
from backup import restore as restore_module
from backup import verify as verify_module
from backup.config import Config
from backup.errors import ConfigError, StaleError

log = logging.getLogger("backup")


def backup(config: Config, args: argparse.Namespace) -> int:
    return report.backup_and_report(config)


def list(config: Config, args: argparse.Namespace) -> int:
    if args.destination:
        targets = jobs.open_targets(config, args.destination)
        entries = catalog.list_entries(targets, globals_only=args.globals)
    else:
        entries = catalog.list_first_answering(jobs.open_targets(config), args.globals)
    if args.database:
        entries = [e for e in entries if e.manifest.database == args.database]
    if args.json:
        json.dump(
            [e.manifest.to_listing(e.destination) for e in entries],
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        sys.stdout.write("\n")
    else:
        print(catalog.format_table(entries, config.retention.days))
    return 0


def _ordered_targets(config: Config, first: str | None) -> list[jobs.Target]:
    """Every configured destination, ``first`` (if given) in front."""
    targets = jobs.open_targets(config)
    if first:
        chosen = [t for t in targets if t.url == first] or jobs.open_targets(config, first)
        targets = chosen + [t for t in targets if t.url != first]
    return targets


def restore(config: Config, args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ConfigError("--jobs must be 1 or more")
    if args.in_place and args.drop_old:
        raise ConfigError("--in-place and --drop-old cannot be combined")
    targets = _ordered_targets(config, args.destination)
    entries = catalog.resolve(
        targets, args.name, args.database, config.postgres.database, globals_only=args.globals
    )
    storages = {t.url: t.storage for t in targets}
    if args.globals:
        restore_module.restore_globals(config, storages, entries, args.force, args.dry_run)
        return 0
    options = restore_module.RestoreOptions(
        target_db=args.target_db,
        force=args.force,
        in_place=args.in_place,
        drop_old=args.drop_old,
        jobs=args.jobs,
        dry_run=args.dry_run,
    )
    restore_module.restore_database(config, storages, entries, options)
    return 0


def verify(config: Config, args: argparse.Namespace) -> int:
    targets = _ordered_targets(config, args.destination)
    entries = catalog.resolve(targets, args.name, args.database, config.postgres.database)
    storages = {t.url: t.storage for t in targets}
    entry = entries[0]
    tools = archive.archive_tools(config, entry.manifest.pg_dump_version)
    result = verify_module.verify(config, storages, entry, tools)
    if args.restore_test:
        verify_module.restore_test(config, storages, entry)
    print(f"ok: {result.name} on {result.destination} verified")
    return 0


def prune(config: Config, args: argparse.Namespace) -> int:
    targets = jobs.open_targets(config)
    items = catalog.plan_prune(targets, config.retention, datetime.now(UTC))
    deleted = catalog.apply_prune(targets, items, args.dry_run)
    going = sum(1 for i in items if not i.keep)
    if args.dry_run:
        print(f"dry run: {going} backup(s) would be deleted, {len(items) - going} kept")
    else:
        print(f"deleted {deleted} backup(s), kept {len(items) - going}")
    return 0


def status(config: Config, args: argparse.Namespace) -> int:
    targets = jobs.open_targets(config)
    now = datetime.now(UTC)
    rows, stale = report.freshness(config, targets, now, args.max_age)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for row in rows:
            age = "never" if row["age_hours"] is None else f"{row['age_hours']:.1f} h ago"
            print(
                f"{row['state']:<7} {row['database']:<24} {age:<14} "
                f"failures in a row: {row['consecutive_failures']}  {row['destination']}"
            )
    if stale:
        raise StaleError(
            f"{len(stale)} backup(s) older than {args.max_age:g} h or missing: " + ", ".join(stale),
        )
    return 0


def check(config: Config, args: argparse.Namespace) -> int:
    targets = jobs.open_targets(config)
    for line in jobs.check(config, targets):
        print(line)
    print("check: ok")
    return 0
