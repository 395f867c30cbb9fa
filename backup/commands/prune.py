"""``prune``: apply retention alone (``--dry-run`` prints what would go and why)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from backup import prune as engine
from backup import storage
from backup.config import Config

HELP = "apply retention alone"
NEEDS_DATABASES = True


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print what would go and why")


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage)
    items = engine.plan(storages, config.retention, datetime.now(UTC))
    deleted = engine.apply(storages, items, args.dry_run)
    going = sum(1 for i in items if not i.keep)
    if args.dry_run:
        print(f"dry run: {going} backup(s) would be deleted, {len(items) - going} kept")
    else:
        print(f"deleted {deleted} backup(s), kept {len(items) - going}")
    return 0
