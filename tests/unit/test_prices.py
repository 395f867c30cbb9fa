"""STORAGE_PRICE_PER_GB_MONTH: one number, or a price per destination scheme, and the cost
lines ``list`` prints with them. Plain unit tests of ``backup.config`` and ``list``."""

from __future__ import annotations

import pytest

from backup.commands.list import format_usage
from backup.config import load
from backup.errors import ConfigError
from backup.manifest.catalog import Usage

BASE = {"PGDATABASE": "app"}


def storage(value: str):
    return load({**BASE, "STORAGE_PRICE_PER_GB_MONTH": value}).storage


def test_one_number_prices_every_destination() -> None:
    config = storage("0.02")
    assert config.price_per_gb_month == 0.02 and config.price_by_scheme == ()
    assert config.price_for("gs://b/p") == config.price_for("file:///x") == 0.02


def test_prices_by_scheme_with_a_default() -> None:
    config = storage("gs=0.020, az=0.018,s3=0.023,b2=0.006,file=0,default=0.005")
    assert config.price_for("gs://bucket/pg") == 0.020
    assert config.price_for("az://cont/pg") == config.price_for("azure://cont/pg") == 0.018
    assert config.price_for("s3://b/p") == 0.023
    assert config.price_for("file:///backups") == 0.0
    assert config.price_per_gb_month == 0.005


def test_a_scheme_not_named_has_no_estimate_without_a_default() -> None:
    config = storage("gs=0.02")
    assert config.price_for("s3://b/p") == 0.0
    assert storage("AZURE=0.018").price_for("az://c/p") == 0.018  # azure is az's name too


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gcs=0.02", "'gcs' is not a destination scheme"),
        ("gs=0.02,gs=0.03", "'gs' is named twice"),
        ("az=0.018,azure=0.02", "'azure' is named twice"),
        ("gs=abc", "gs='abc' is not a price between 0 and 100"),
        ("gs=-1", "is not a price"),
        ("gs=1e6", "is not a price"),
        ("gs=0.02,s3", "'s3' is not scheme=price"),
        ("gs=0.02,,az=1", "'' is not scheme=price"),
    ],
)
def test_a_bad_price_list_is_exit_2_naming_the_variable(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load({**BASE, "STORAGE_PRICE_PER_GB_MONTH": value})
    assert raised.value.exit_code == 2
    assert "STORAGE_PRICE_PER_GB_MONTH" in str(raised.value)
    assert expected in str(raised.value)


def test_the_cost_lines_use_each_destination_price() -> None:
    config = storage("gs=0.020,az=0.018,default=0.006")
    text = format_usage(
        [
            Usage("gs://bucket/pg", objects=2, stored_bytes=10 * 10**9, backups=1),
            Usage("az://cont/pg", objects=2, stored_bytes=10 * 10**9, backups=1),
            Usage("s3://other/pg", objects=2, stored_bytes=10 * 10**9, backups=1),
        ],
        config.price_for,
    )
    lines = text.splitlines()
    assert lines[1].split()[-1] == "$0.20/month"
    assert lines[2].split()[-1] == "$0.18/month"
    assert lines[3].split()[-1] == "$0.06/month"
    assert lines[4].split()[-1] == "$0.44/month"  # the sum of each one's cost
    assert lines[5] == (
        "Estimated per GB-month at $0.02 for gs://, $0.018 for az://, $0.006 for s3:// "
        "(STORAGE_PRICE_PER_GB_MONTH; GB = 10^9 bytes)"
    )


def test_a_destination_without_a_price_is_said_so() -> None:
    text = format_usage(
        [
            Usage("gs://bucket/pg", stored_bytes=10**9, backups=1),
            Usage("file:///backups", stored_bytes=10**9, backups=1),
        ],
        storage("gs=0.02").price_for,
    )
    lines = text.splitlines()
    assert "$" not in lines[2]
    assert lines[3].split()[-1] == "$0.02/month"
    assert lines[4].endswith("; no estimate for file://")
