"""``status``: the age of the newest complete backup of each database on each destination;
exit 1 when one is older than ``--max-age`` or missing (a monitoring check).

Only the databases this job is configured for are looked at (with ``BACKUP_DATABASES=all``:
every database the server has now, and the globals); a shard's with ``BACKUP_SHARDS`` and an
index, every shard's without one (the whole job's status). A backup dated more than a day in the
future never counts as fresh, and it, like a manifest that is not believed, is flagged and
makes the check fail: both need a person to look."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from backup import manifest, retention, storage
from backup.config import Config
from backup.errors import StaleError
from backup.job import history
from backup.job import scope as job_scope
from backup.manifest import Scope
from backup.storage import Storage

NEEDS_DATABASES = True
DESCRIPTION = (
    "The newest complete backup of each database of the job on each destination, its age "
    "and the failures in a row. Exit 1 when one is older than --max-age, missing, dated in "
    "the future or not trustworthy: point an external monitor at it."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-age",
        type=float,
        default=26.0,
        metavar="HOURS",
        help="older than this is stale (default 26)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage)
    rows, problems = freshness(config, storages, datetime.now(UTC), args.max_age)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for row in rows:
            age = "never" if row["age_hours"] is None else f"{row['age_hours']:.1f} h ago"
            flags = [f"! dated in the future: {name}" for name in row["future_dated"]]
            flags += [f"! not trustworthy: {name}" for name in row["untrusted"]]
            print(
                f"{row['state']:<7} {row['database']:<24} {age:<14} "
                f"failures in a row: {row['consecutive_failures']}  {row['destination']}"
                + "".join(f"  {flag}" for flag in flags)
            )
    if problems:
        flagged = any(row["future_dated"] or row["untrusted"] for row in rows)
        raise StaleError(
            f"{len(problems)} problem(s) (older than {args.max_age:g} h, missing, dated in the "
            "future or not trustworthy): " + "; ".join(problems),
            hint="run 'list' to see the flagged manifests: a clock that was wrong, or manifests "
            "edited or copied by hand; they never count as fresh backups"
            if flagged
            else None,
        )
    return 0


def freshness(
    config: Config,
    storages: list[Storage],
    now: datetime,
    max_age_hours: float,
    scope: Scope | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Newest complete backup per database of the job and destination; the problems (stale,
    missing, dated in the future, or a manifest that is not believed)."""
    scope = scope or job_scope.scope_or_backed_up(config, storages)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    limit = timedelta(hours=max_age_hours)
    targets: list[tuple[str, str | None]] = [("database", d) for d in sorted(scope.databases)]
    if scope.globals:
        targets.append(("globals", None))
    for store in storages:
        found = manifest.scan(store, scope=scope)
        runs = history.load_job(store, config.postgres, config.scale)
        for kind, database in targets or [("database", "(any)")]:
            label = database if kind == "database" else "globals"
            mine = [m for m in found.trusted if m.kind == kind and m.database == database]
            future = [m.name for m in mine if retention.future_dated(m.created_at, now)]
            newest = next((m for m in mine if m.name not in future), None)
            untrusted = [
                r.name for r in found.rejected if r.kind == kind and r.database == database
            ]
            age = (now - newest.created_at) if newest else None
            fresh = age is not None and age <= limit
            db_state = runs.databases.get(label)
            rows.append(
                {
                    "database": label,
                    "destination": store.url,
                    "state": "ok" if fresh else ("stale" if newest else "missing"),
                    "newest": newest.name if newest else None,
                    "created_at": newest.created_at.isoformat() if newest else None,
                    "age_hours": round(age.total_seconds() / 3600, 2) if age else None,
                    "consecutive_failures": db_state.consecutive_failures if db_state else 0,
                    "future_dated": future,
                    "untrusted": untrusted,
                }
            )
            where = f"{label} on {store.url}"
            if not fresh:
                problems.append(f"{where}: {'too old' if newest else 'missing'}")
            if future:
                problems.append(f"{where}: dated in the future: {', '.join(future)}")
            if untrusted:
                problems.append(f"{where}: manifest not trustworthy: {', '.join(untrusted)}")
    return rows, problems
