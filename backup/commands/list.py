"""``list``: the complete backups, newest first, as the runbook's table or as JSON.

Manifests that are not believed (invalid, or naming an object that is not their own) are shown
flagged, never hidden and never a crash; so are backups dated more than a day in the future."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from backup import catalog, retention, storage
from backup.catalog import Entry, Flagged
from backup.config import Config

HELP = "complete backups of every database, newest first"
NEEDS_DATABASES = False
DESCRIPTION = (
    "List the complete backups (those with a manifest), newest first, from the first "
    "destination that answers: name, size, date, encryption, destination. Manifests that "
    "cannot be believed are shown and marked, never hidden."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.add_argument("--database", help="only this database")
    parser.add_argument("--destination", metavar="URL", help="only this destination")
    parser.add_argument("--globals", action="store_true", help="list roles/tablespaces backups")


def run(config: Config, args: argparse.Namespace) -> int:
    if args.destination:
        storages = storage.open_all(config.storage, args.destination)
        listing = catalog.list_all(storages, globals_only=args.globals)
    else:
        listing = catalog.list_first_answering(storage.open_all(config.storage), args.globals)
    entries, flagged = listing.entries, listing.flagged
    if args.database:
        entries = [e for e in entries if e.manifest.database == args.database]
        flagged = [f for f in flagged if f.rejected.database == args.database]
    now = datetime.now(UTC)
    if args.json:
        rows = [_listing(e, now) for e in entries]
        rows += [f.rejected.to_listing(f.destination) for f in flagged]
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(format_table(entries, config.retention.days, flagged, now))
    return 0


def _listing(entry: Entry, now: datetime) -> dict[str, object]:
    return {
        **entry.manifest.to_listing(entry.destination),
        "trusted": True,
        "future_dated": retention.future_dated(entry.manifest.created_at, now),
    }


def format_table(
    entries: list[Entry],
    retention_days: int,
    flagged: list[Flagged] | None = None,
    now: datetime | None = None,
) -> str:
    """The seed's table: name, size in MB, date, then the total and the retention setting;
    flagged manifests and future-dated backups are marked with ``!`` and explained below."""
    flagged = flagged or []
    now = now or datetime.now(UTC)
    names = [e.manifest.name for e in entries] + [f.rejected.name for f in flagged]
    width = max([len(n) for n in names] + [30]) + 2
    rule = "=" * (width + 60)
    lines = [
        rule,
        "AVAILABLE BACKUPS",
        rule,
        f"{'Name':<{width}}{'Size (MB)':>10}  {'Date (UTC)':<20} {'Enc':<4}Destination",
        "-" * (width + 60),
    ]
    notes = []
    for entry in entries:
        m = entry.manifest
        future = retention.future_dated(m.created_at, now)
        lines.append(
            f"{m.name:<{width}}{m.size_bytes / 1e6:>10.2f}  "
            f"{m.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} "
            f"{'age' if m.encrypted else '-':<4}{entry.destination}"
            + ("  ! dated in the future" if future else "")
        )
        if future:
            notes.append(
                f"! {m.name} on {entry.destination} is dated in the future (clock skew or "
                "tampering?): retention keeps it but never counts it among the newest"
            )
    for flag in flagged:
        bad = flag.rejected
        when = bad.created_at.strftime("%Y-%m-%d %H:%M:%S") if bad.created_at else "?"
        lines.append(
            f"{bad.name:<{width}}{'?':>10}  {when:<20} {'?':<4}{flag.destination}"
            "  ! NOT TRUSTWORTHY"
        )
        notes.append(
            f"! {bad.key} on {flag.destination} is not trustworthy: the manifest {bad.reason}; "
            "restore, verify and prune never use it"
        )
    lines += [
        rule,
        f"Total: {len(entries)} backup{'s' if len(entries) != 1 else ''}",
        f"Retention: {retention_days} days",
    ]
    if notes:
        lines += [rule, *notes]
    return "\n".join(lines)
