"""``list``: the complete backups, newest first, as the runbook's table or as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from backup import catalog, storage
from backup.catalog import Entry
from backup.config import Config

HELP = "complete backups of every database, newest first"
NEEDS_DATABASES = False


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.add_argument("--database", help="only this database")
    parser.add_argument("--destination", metavar="URL", help="only this destination")
    parser.add_argument("--globals", action="store_true", help="list roles/tablespaces backups")


def run(config: Config, args: argparse.Namespace) -> int:
    if args.destination:
        storages = storage.open_all(config.storage, args.destination)
        entries = catalog.list_entries(storages, globals_only=args.globals)
    else:
        entries = catalog.list_first_answering(storage.open_all(config.storage), args.globals)
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
        print(format_table(entries, config.retention.days))
    return 0


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
