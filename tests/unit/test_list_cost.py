"""The cost lines of ``list``: bytes per destination, dollars a month at a price per GB."""

from __future__ import annotations

from backup.commands.list import format_usage, monthly_cost, per_month
from backup.manifest.catalog import Usage
from backup.storage import ObjectInfo


def test_usage_counts_every_object_and_the_manifests_as_backups():
    infos = [
        ObjectInfo("shop/shop-20251110T030000Z.dump.zst", 4_000_000_000),
        ObjectInfo("shop/shop-20251110T030000Z.manifest.json", 1_000),
        ObjectInfo("_globals/globals-20251110T030000Z.sql.zst", 2_000),
        ObjectInfo("_globals/globals-20251110T030000Z.manifest.json", 1_000),
        ObjectInfo("_state/status.json", 500),
        ObjectInfo("shop/shop-20251109T030000Z.dump.zst", 1_000_000),  # orphan: still paid for
    ]
    usage = Usage.of("b2://bucket/pg", infos)
    assert (usage.objects, usage.backups, usage.globals_backups) == (6, 2, 1)
    assert usage.stored_bytes == 4_001_004_500


def test_the_runbook_cost_table_at_the_2023_price():
    # The runbook: 6 GB for 30 days of a 1 GB database at $0.005 was $0.03; at B2's $0.006:
    assert per_month(monthly_cost(6_000_000_000, 0.006)) == "≈ $0.04/month"
    assert per_month(monthly_cost(60_000_000, 0.005)) == "≈ $0.0003/month"
    assert per_month(monthly_cost(10**15, 0.006)) == "≈ $6,000.00/month"
    assert per_month(0.0) == "≈ $0.00/month"
    assert per_month(0.00001) == "< $0.0001/month"


def test_format_usage_says_why_a_destination_is_missing_and_sums_the_rest():
    text = format_usage(
        [
            Usage("b2://bucket/pg", objects=3, stored_bytes=2_000_000_000, backups=2),
            Usage("s3://other/pg", error="access denied"),
            Usage("file:///mnt/pg", objects=2, stored_bytes=1_000_000_000, backups=1),
        ],
        0.006,
    )
    lines = text.splitlines()
    assert lines[1].split() == [
        "b2://bucket/pg",
        "2",
        "backups",
        "2000.00",
        "MB",
        "≈",
        "$0.01/month",
    ]
    assert lines[2].split()[1:] == ["cannot", "be", "listed:", "access", "denied"]
    assert lines[4].split() == ["all", "destinations", "3000.00", "MB", "≈", "$0.02/month"]
    assert "STORAGE_PRICE_PER_GB_MONTH" in lines[5]
    assert "$" not in format_usage([Usage("b2://bucket/pg", stored_bytes=10**12)], 0.0)
