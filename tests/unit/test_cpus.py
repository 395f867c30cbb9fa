"""The cores the job may use, from real cgroup file contents (v2 cpu.max, v1 cfs files)."""

from __future__ import annotations

import os

import pytest

from backup.config.cpus import available_cores, quota_cores


@pytest.mark.parametrize(
    ("affinity", "files", "expected"),
    [
        # cgroup v2: "quota period", or "max period" for no limit
        (64, {"cpu_max": "200000 100000\n"}, 2),
        (64, {"cpu_max": "150000 100000\n"}, 2),  # 1.5 cores: rounded up
        (64, {"cpu_max": "50000 100000\n"}, 1),  # half a core: at least 1
        (64, {"cpu_max": "max 100000\n"}, 64),
        (4, {"cpu_max": "800000 100000\n"}, 4),  # capped by the affinity
        # cgroup v1: cfs_quota_us = -1 for no limit
        (64, {"cfs_quota_us": "300000\n", "cfs_period_us": "100000\n"}, 3),
        (64, {"cfs_quota_us": "-1\n", "cfs_period_us": "100000\n"}, 64),
        (2, {"cfs_quota_us": "400000\n", "cfs_period_us": "100000\n"}, 2),
        # no cgroup file, or text that does not parse: the affinity alone
        (8, {}, 8),
        (8, {"cpu_max": "garbage"}, 8),
        (0, {}, 1),
    ],
)
def test_quota_cores(affinity: int, files: dict[str, str], expected: int) -> None:
    assert quota_cores(affinity, **files) == expected


def test_available_cores_is_within_this_process_affinity() -> None:
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))
