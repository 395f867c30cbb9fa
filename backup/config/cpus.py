"""How many cores the job may use: the cgroup CPU quota, capped by the CPU affinity.

A container limited to 2 cores on a 64-core host sees 64 in ``os.cpu_count()``; the quota is
what the scheduler lets it use. ``quota_cores`` is pure (it takes the files' texts) so it is
tested with real cgroup contents; ``available_cores`` reads this machine's files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
# cgroup v1 mounts the cpu controller alone or joined with cpuacct, depending on the distribution.
CGROUP_V1_DIRS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"))


def quota_cores(
    affinity_cores: int,
    cpu_max: str | None = None,
    cfs_quota_us: str | None = None,
    cfs_period_us: str | None = None,
) -> int:
    """The cores the job may use: ``quota / period`` rounded up, at most ``affinity_cores``, at
    least 1.

    ``cpu_max`` is cgroup v2's ``cpu.max`` ("quota period", or "max period" for no limit);
    ``cfs_quota_us`` and ``cfs_period_us`` are cgroup v1's files ("-1" for no limit). ``None``
    (or text that does not parse) means the file was not there: no limit from it.
    """
    quota: float | None = None
    if cpu_max is not None:
        fields = cpu_max.split()
        if len(fields) >= 1 and fields[0] != "max":
            period = fields[1] if len(fields) > 1 else "100000"
            quota = _ratio(fields[0], period)
    elif cfs_quota_us is not None and cfs_period_us is not None:
        quota = _ratio(cfs_quota_us.strip(), cfs_period_us.strip())
    cores = max(1, affinity_cores)
    if quota is not None and quota > 0:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # v1 writes -1 for "no limit"
        return None
    return q / p


def available_cores() -> int:
    """``quota_cores`` for this process: its affinity and this machine's cgroup files."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    cpu_max = _read(CGROUP_V2_CPU_MAX)
    if cpu_max is not None:
        return quota_cores(affinity, cpu_max=cpu_max)
    for folder in CGROUP_V1_DIRS:
        quota = _read(folder / "cpu.cfs_quota_us")
        if quota is not None:
            return quota_cores(
                affinity, cfs_quota_us=quota, cfs_period_us=_read(folder / "cpu.cfs_period_us")
            )
    return quota_cores(affinity)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
