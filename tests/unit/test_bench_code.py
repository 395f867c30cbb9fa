"""The benchmark's own code runs: its pure functions, and the ways it lists (issue 14's
directory-format rows). Nothing here measures anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import tables  # noqa: E402


def test_the_directory_format_ways_are_listed():
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench.py"), "--list-ways"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {line.split()[0] for line in out.splitlines()}
    assert {"backup-file-dir-j1", "backup-file-dir-j2", "restore-file-dir-j2"} <= names
    assert {"pg_dump-dir-j1", "pg_dump-dir-j2", "backup-file"} <= names


def test_table_seconds_run_from_each_table_line_to_the_next_line():
    stamped = [
        (0.0, "pg_dump: reading schemas"),
        (1.0, 'pg_dump: dumping contents of table "public.a"'),
        (4.0, 'pg_dump: dumping contents of table "public.b"'),
        (5.5, "pg_dump: something else"),
        (6.0, 'pg_dump: dumping contents of table "public.c"'),
    ]
    assert tables.table_seconds(stamped, 6.25) == {
        "public.a": 3.0,
        "public.b": 1.5,
        "public.c": 0.25,
    }


def test_the_largest_table_bounds_every_number_of_workers():
    seconds = [6.0, 2.0, 2.0, 1.0, 1.0]
    assert tables.makespan(seconds, 1) == 12.0
    assert tables.makespan(seconds, 2) == 6.0
    assert tables.makespan(seconds, 8) == 6.0
    assert tables.makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0  # largest first, not optimal


def test_dedup_sizes_the_partitions_and_counts_every_file(tmp_path):
    import dedup

    rows = dedup.month_rows(400)
    on_disk_mb = rows * (dedup.MONTHS - 0.5) * dedup.EVENT_ROW_BYTES / 1e6
    assert 390 < on_disk_mb < 410
    (tmp_path / "shop" / "_objects" / "ab").mkdir(parents=True)
    (tmp_path / "shop" / "_objects" / "ab" / "x.zst").write_bytes(b"1234")
    (tmp_path / "shop" / "shop-1.manifest.json").write_bytes(b"{}")
    assert dedup.tree_bytes(tmp_path) == 6


def test_the_many_databases_benchmark_starts():
    out = subprocess.run(
        [sys.executable, str(BENCH / "many.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--databases" in out and "--parallel" in out
