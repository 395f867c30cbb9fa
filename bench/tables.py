"""Per-table dump times, and what ``pg_dump -j N`` could gain with enough cores.

``pg_dump -j`` parallelizes by table: each worker dumps one whole table at a time, largest
first. So whatever the cores, the data phase lasts at least as long as the largest table's
dump. ``time_tables`` runs bare ``pg_dump -Fd -j1 --verbose`` once (not measured) and stamps
each "dumping contents of table" line as it arrives: a table's time is from its line to the
next line pg_dump prints (or its exit). ``makespan`` schedules those times on N workers the
way pg_dump does (largest first, to the first free worker).
"""

from __future__ import annotations

import heapq
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

TABLE_LINE = re.compile(r'dumping contents of table "(?P<table>[^"]+)"')


def time_tables(pg_dump: Path, env: Mapping[str, str], folder: Path) -> dict:
    """Bare pg_dump -Fd -j1 -Z0 --verbose into ``folder`` (removed afterwards): each table's
    seconds, in dump order, and the whole run's."""
    argv = [str(pg_dump), "-Fd", "-j1", "-Z0", "--no-sync", "--verbose", "--no-password"]
    argv += ["-f", str(folder)]
    stamped: list[tuple[float, str]] = []
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            stamped.append((time.perf_counter() - started, line.rstrip("\n")))
        code = proc.wait()
        wall_s = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if code != 0:
        tail = "\n".join(line for _, line in stamped[-20:])
        raise RuntimeError(f"pg_dump -Fd --verbose exited {code}\n{tail}")
    return {"tables": table_seconds(stamped, wall_s), "wall_s": wall_s}


def table_seconds(stamped: list[tuple[float, str]], end_s: float) -> dict[str, float]:
    """From pg_dump's stamped verbose lines: each table's seconds, from its "dumping contents"
    line to the next line (or ``end_s``)."""
    out: dict[str, float] = {}
    for i, (at, line) in enumerate(stamped):
        found = TABLE_LINE.search(line)
        if found:
            until = stamped[i + 1][0] if i + 1 < len(stamped) else end_s
            out[found["table"]] = until - at
    return out


def makespan(seconds: Iterable[float], jobs: int) -> float:
    """The data phase's length with ``jobs`` workers, each table to the first free worker,
    largest first (pg_dump's order), on a machine where the workers never wait for a core."""
    workers = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(workers, workers[0] + s)
    return max(workers)


def summary_lines(times: dict, jobs: Iterable[int] = (2, 4, 8)) -> list[str]:
    tables = times["tables"]
    if not tables:
        return []
    total = sum(tables.values())
    ranked = sorted(tables.items(), key=lambda kv: kv[1], reverse=True)
    shown = ", ".join(f"{name} {s:.2f} s ({s / total:.0%})" for name, s in ranked[:4])
    rest = times["wall_s"] - total
    gains = ", ".join(f"-j{n} {makespan(tables.values(), n) + rest:.1f} s" for n in jobs)
    return [
        f"per-table data time (bare pg_dump -Fd -j1 --verbose, one run): {shown}; "
        f"all tables {total:.2f} s of {times['wall_s']:.2f} s",
        f"with a core per worker (and the server's backends on cores of their own), "
        f"pg_dump -jN would take about: {gains} (largest table first; the largest table "
        f"{ranked[0][1]:.2f} s bounds every N)",
    ]
