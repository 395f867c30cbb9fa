"""The machine a benchmark ran on: CPU, the cores this process may use, RAM, versions, commit."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cgroup_quota() -> str:
    """cgroup v2 cpu.max ('max 100000' = no quota), or v1's cfs quota/period."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    if v2.exists():
        quota, period = v2.read_text().split()
        return "none" if quota == "max" else f"{int(quota) / int(period):.2f} cores"
    v1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    if v1.exists():
        quota = int(v1.read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return "none" if quota < 0 else f"{quota / period:.2f} cores"
    return "no cgroup cpu controller visible"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def describe(repo: Path, pg_bindir: Path, server_version: str, python: str) -> dict[str, str]:
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": _cpu_model(),
        "cores_online": str(os.cpu_count()),
        "cores_affinity": str(len(os.sched_getaffinity(0))),
        "cgroup_cpu_quota": _cgroup_quota(),
        "ram_gib": f"{_ram_gib():.1f}",
        "kernel": platform.release(),
        "python": _first_line([python, "--version"]),
        "postgresql_server": server_version,
        "pg_dump": _first_line([str(pg_bindir / "pg_dump"), "--version"]),
        "zstd": _first_line(["zstd", "--version"]),
        "age": _first_line(["age", "--version"]),
        "git_commit": commit + (" (dirty)" if dirty else ""),
    }


def summary_lines(info: dict[str, str]) -> list[str]:
    return [
        f"machine: {info['cpu']}; {info['cores_affinity']} cores usable (affinity), "
        f"{info['cores_online']} online, cgroup quota {info['cgroup_cpu_quota']}; "
        f"{info['ram_gib']} GiB RAM; Linux {info['kernel']}",
        f"versions: {info['python']}; PostgreSQL {info['postgresql_server']} "
        f"({info['pg_dump']}); {info['zstd']}; age {info['age']}; "
        f"commit {info['git_commit']}; {info['date']}",
    ]
