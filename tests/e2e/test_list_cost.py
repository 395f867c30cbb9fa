"""``list`` ends with what each destination holds under its prefix and an estimate of its
monthly cost at STORAGE_PRICE_PER_GB_MONTH (B2's price by default); ``list --json`` stays a
bare array."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import run_job


def _stored_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def _row(stdout: str, destination: str) -> str:
    return next(line for line in stdout.splitlines() if line.strip().startswith(destination))


def test_list_ends_with_bytes_and_cost_of_every_destination(job_env, backup_dir, tmp_path):
    second = tmp_path / "mirror"
    env = {**job_env, "BACKUP_DESTINATIONS": f"file://{backup_dir},file://{second}"}
    assert run_job("backup", env=env).returncode == 0
    assert run_job("backup", env=env).returncode == 0
    # A leftover without a manifest costs money too: it is counted.
    (second / "leftover.bin").write_bytes(b"x" * 1_000_000)

    table = run_job("list", env=env)
    assert table.returncode == 0, table.output
    lines = table.stdout.splitlines()
    storage_at = lines.index("Storage (everything under each destination's prefix):")
    assert storage_at > next(i for i, line in enumerate(lines) if line.startswith("Total: "))
    for root in (backup_dir, second):
        row = _row(table.stdout, f"file://{root}")
        assert "2 backups" in row
        megabytes = float(re.search(r"([0-9.]+) MB", row)[1])
        assert abs(megabytes - _stored_bytes(root) / 1e6) < 0.006, (row, _stored_bytes(root))
        assert row.endswith("< $0.0001/month")  # a few MB at $0.006 per GB
    assert "all destinations" in table.stdout
    assert (
        "Estimated at $0.006 per GB-month for every destination "
        "(STORAGE_PRICE_PER_GB_MONTH; GB = 10^9 bytes)"
    ) in table.stdout


def test_the_price_is_read_and_zero_leaves_the_bytes_alone(job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    stored = _stored_bytes(backup_dir)
    priced = run_job("list", env={**job_env, "STORAGE_PRICE_PER_GB_MONTH": "50"})
    assert priced.returncode == 0, priced.output
    expected = stored / 1e9 * 50  # about $0.04 for 0.8 MB
    shown = re.search(r"≈ \$([0-9.,]+)/month", _row(priced.stdout, f"file://{backup_dir}"))[1]
    assert abs(float(shown) - expected) <= 0.005, (shown, expected)
    assert "Estimated at $50 per GB-month" in priced.stdout

    free = run_job("list", env={**job_env, "STORAGE_PRICE_PER_GB_MONTH": "0"})
    assert free.returncode == 0, free.output
    assert " MB" in _row(free.stdout, f"file://{backup_dir}")
    assert "$" not in free.stdout and "Estimated" not in free.stdout


def test_a_bad_price_is_exit_2_naming_the_variable(job_env):
    for value in ("-1", "0.006$", "6/TB", "1e6", "inf"):
        result = run_job("list", env={**job_env, "STORAGE_PRICE_PER_GB_MONTH": value})
        assert result.returncode == 2, (value, result.output)
        assert "STORAGE_PRICE_PER_GB_MONTH" in result.stderr
        assert "Traceback" not in result.output


def test_list_json_stays_an_array_without_the_cost(job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    result = run_job("list", "--json", env=job_env)
    assert result.returncode == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and len(rows) == 1
    assert "month" not in result.output and "Storage" not in result.output


def test_list_globals_still_says_what_each_destination_holds(job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    result = run_job("list", "--globals", env=job_env)
    assert result.returncode == 0, result.output
    assert "1 backup " in _row(result.stdout, f"file://{backup_dir}")
