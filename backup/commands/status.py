"""``status``: the age of the newest complete backup of each database on each destination;
exit 1 when one is older than ``--max-age`` or missing (a monitoring check)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from backup import history, manifest, storage
from backup.config import Config
from backup.errors import StaleError
from backup.storage import Storage

HELP = "age of the newest complete backup; exit 1 when too old"
NEEDS_DATABASES = True


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-age",
        type=float,
        default=26.0,
        metavar="HOURS",
        help="older than this is stale (default 26)",
    )
    parser.add_argument("--json", action="store_true")


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage)
    rows, stale = freshness(config, storages, datetime.now(UTC), args.max_age)
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


def freshness(
    config: Config, storages: list[Storage], now: datetime, max_age_hours: float
) -> tuple[list[dict[str, object]], list[str]]:
    """Newest complete backup per database and destination; the stale or missing ones."""
    rows: list[dict[str, object]] = []
    stale: list[str] = []
    limit = timedelta(hours=max_age_hours)
    for store in storages:
        records = manifest.read_all(store)
        runs = history.load(store)
        expected = (
            sorted({m.database for m in records if m.database})
            if config.postgres.all_databases
            else list(config.postgres.databases)
        )
        if config.postgres.all_databases and not expected:
            expected = ["(any)"]
        for database in expected:
            newest = next((m for m in records if m.database == database), None)
            age = (now - newest.created_at) if newest else None
            fresh = age is not None and age <= limit
            db_state = runs.databases.get(database)
            rows.append(
                {
                    "database": database,
                    "destination": store.url,
                    "state": "ok" if fresh else ("stale" if newest else "missing"),
                    "newest": newest.name if newest else None,
                    "created_at": newest.created_at.isoformat() if newest else None,
                    "age_hours": round(age.total_seconds() / 3600, 2) if age else None,
                    "consecutive_failures": db_state.consecutive_failures if db_state else 0,
                }
            )
            if not fresh:
                stale.append(f"{database} on {store.url}")
    return rows, stale
