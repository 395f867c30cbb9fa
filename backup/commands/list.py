"""``list``: the complete backups, newest first, as the runbook's table or as JSON.

Manifests that are not believed (invalid, or naming an object that is not their own) are shown
flagged, never hidden and never a crash; so are backups dated more than a day in the future.

The table ends, as the runbook's cost table did, with what each destination holds and an
estimate of its monthly cost (``STORAGE_PRICE_PER_GB_MONTH``: one price, or one per scheme).
``--json`` prints the array alone (a contract) and lists nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from backup import retention, storage
from backup.config import Config
from backup.manifest import catalog
from backup.manifest.catalog import Entry, Flagged, Usage

NEEDS_DATABASES = False
DESCRIPTION = (
    "List the complete backups (those with a manifest), newest first, from the first "
    "destination that answers: name, size, date, encryption, destination. Manifests that "
    "cannot be believed are shown and marked, never hidden. The table ends with what each "
    "destination holds under its prefix and an estimate of its monthly cost at "
    "STORAGE_PRICE_PER_GB_MONTH (one price, or one per scheme: gs=0.020,az=0.018,default=0.006); "
    "--json prints the array alone."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.add_argument("--database", help="only this database")
    parser.add_argument("--destination", metavar="URL", help="only this destination")
    parser.add_argument("--globals", action="store_true", help="list roles/tablespaces backups")


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage, args.destination)
    if args.destination:
        listing = catalog.list_all(storages, globals_only=args.globals)
    else:
        listing = catalog.list_first_answering(storages, args.globals)
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
        # Every destination's: the one listed above costs no request more, each other one
        # costs one listing of its prefix (no manifest is read).
        usages = [listing.usage.get(s.url) or catalog.usage(s) for s in storages]
        prices = config.storage
        print(
            format_usage(
                usages, prices.price_for if prices.price_by_scheme else prices.price_per_gb_month
            )
        )
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
            + (
                f"  (directory: {m.new_bytes / 1e6:.2f} MB of it new)"
                if m.format == "directory"
                else ""
            )
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


def format_usage(usages: list[Usage], price: float | Callable[[str], float]) -> str:
    """What each destination holds under its prefix and, with a price, its monthly cost:

    ``b2://bucket/backups/postgresql  12 backups     1234.57 MB   ≈ $0.01/month``

    ``price``: one for every destination, or the price of each destination's URL
    (``StorageConfig.price_for``: STORAGE_PRICE_PER_GB_MONTH by scheme); 0 is no estimate."""
    price_of: Callable[[str], float] = price if callable(price) else (lambda _url: price)
    lines = ["Storage (everything under each destination's prefix):"]
    width = max(len(u.destination) for u in usages) + 2 if usages else 0
    for u in usages:
        if u.error is not None:
            lines.append(f"  {u.destination:<{width}}cannot be listed: {u.error}")
            continue
        backups = f"{u.backups} backup{'s' if u.backups != 1 else ''}"
        if u.globals_backups:
            backups += f" ({u.globals_backups} of roles)"
        line = f"  {u.destination:<{width}}{backups:<24}{u.stored_bytes / 1e6:>12.2f} MB"
        if price_of(u.destination) > 0:
            line += f"   {per_month(monthly_cost(u.stored_bytes, price_of(u.destination)))}"
        lines.append(line)
    measured = [u for u in usages if u.error is None]
    priced = [u for u in measured if price_of(u.destination) > 0]
    if len(measured) > 1:
        total = sum(u.stored_bytes for u in measured)
        line = f"  {'all destinations':<{width}}{'':<24}{total / 1e6:>12.2f} MB"
        if priced:
            cost = sum(monthly_cost(u.stored_bytes, price_of(u.destination)) for u in priced)
            line += f"   {per_month(cost)}"
        lines.append(line)
    if not callable(price):
        if price > 0:
            lines.append(
                f"Estimated at ${price:g} per GB-month for every destination "
                "(STORAGE_PRICE_PER_GB_MONTH; GB = 10^9 bytes)"
            )
        return "\n".join(lines)
    rates: dict[str, float] = {}
    for u in usages:
        rates.setdefault(u.destination.partition("://")[0].lower() + "://", price_of(u.destination))
    shown = [f"${rate:g} for {scheme}" for scheme, rate in rates.items() if rate > 0]
    unpriced = [scheme for scheme, rate in rates.items() if rate <= 0]
    if shown:
        lines.append(
            f"Estimated per GB-month at {', '.join(shown)} (STORAGE_PRICE_PER_GB_MONTH; "
            "GB = 10^9 bytes)" + (f"; no estimate for {', '.join(unpriced)}" if unpriced else "")
        )
    return "\n".join(lines)


def monthly_cost(stored_bytes: int, price_per_gb_month: float) -> float:
    """Dollars a month for ``stored_bytes`` at ``price_per_gb_month`` (GB = 10^9 bytes, as B2
    and S3 bill)."""
    return stored_bytes / 1e9 * price_per_gb_month


def per_month(amount: float) -> str:
    """``≈ $7.41/month``; under a cent to four places, as the runbook's table (``$0.0003``)."""
    if amount == 0 or amount >= 0.01:
        return f"≈ ${amount:,.2f}/month"
    if amount >= 0.0001:
        return f"≈ ${amount:.4f}/month"
    return "< $0.0001/month"
