"""One command measured: wall time, CPU of its whole process tree, CPU of the PostgreSQL tools
inside it, and the peak memory of the tree.

- Tree CPU: the ``rusage`` that ``wait4`` returns for the top process, which includes every
  descendant it (or they) waited for.
- Tools CPU: pg_dump, pg_restore, psql and pg_dumpall run from a bin directory of wrappers
  (``ToolWrappers``; the job finds it through ``BACKUP_PG_BIN_DIRS``) that start the real tool
  under GNU ``time``, which appends the tool's user + system seconds and max RSS to a log file.
  Own CPU = tree CPU - tools CPU: the job's processes (or zstd / bash for the bare ways), exactly.
- Peak tree RSS: every ~20 ms the whole of /proc is read, the descendants of the top process
  found through their parent ids, and their VmRSS summed; the largest sum is kept (the same
  ``tests/fixtures/proctree.py`` the memory test uses). Processes living less than a sample
  period may be missed. As a cross-check, the largest single process
  (``ru_maxrss``) comes from GNU time wrapped around the command: ``wait4``'s own ru_maxrss
  would count the image of this (large) Python process, which every child has until its exec.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.proctree import TreeSampler

SAMPLE_PERIOD_S = 0.02
MIB = 1024 * 1024
WRAPPED_TOOLS = ("pg_dump", "pg_restore", "psql", "pg_dumpall")
GNU_TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Measurement:
    wall_s: float
    tree_cpu_s: float
    tools_cpu_s: float
    peak_tree_rss_mib: float
    max_process_rss_mib: float  # ru_maxrss of the largest process, from GNU time
    exit_code: int

    @property
    def own_cpu_s(self) -> float:
        """CPU of everything in the tree but the PostgreSQL tools."""
        return max(0.0, self.tree_cpu_s - self.tools_cpu_s)


class ToolWrappers:
    """A bin directory whose pg_dump, pg_restore, psql and pg_dumpall run the real ones under
    GNU time, appending ``user system maxrss_kib`` of each run to ``log``."""

    def __init__(self, directory: Path, real_bindir: Path) -> None:
        self.bindir = directory
        self.log = directory / "tools.log"
        directory.mkdir(parents=True, exist_ok=True)
        for tool in WRAPPED_TOOLS:
            script = directory / tool
            script.write_text(
                "#!/bin/sh\n"
                f'exec {GNU_TIME} -q -a -o "{self.log}" -f "%U %S %M" '
                f'"{real_bindir / tool}" "$@"\n'
            )
            script.chmod(0o755)

    def take_cpu_s(self) -> float:
        """The CPU seconds logged since the last call; the log starts afresh."""
        try:
            lines = self.log.read_text().splitlines()
        except FileNotFoundError:
            return 0.0
        self.log.unlink()
        total = 0.0
        for line in lines:
            fields = line.split()
            if len(fields) == 3:
                total += float(fields[0]) + float(fields[1])
        return total


def run_measured(
    argv: Sequence[str],
    env: Mapping[str, str],
    wrappers: ToolWrappers | None,
    cwd: Path,
    stdout_path: Path | None = None,
    stderr_path: Path | None = None,
) -> Measurement:
    """Run ``argv`` to its end and measure it; stdout to ``stdout_path`` (else /dev/null)."""
    if wrappers:
        wrappers.take_cpu_s()  # forget anything logged outside a measurement
    maxrss_file = Path(tempfile.mkstemp(prefix="bench-maxrss-")[1])
    argv = [GNU_TIME, "-q", "-f", "%M", "-o", str(maxrss_file), *argv]
    with (
        open(stdout_path or os.devnull, "wb") as out,
        open(stderr_path or os.devnull, "wb") as err,
    ):
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        sampler = TreeSampler(proc.pid, SAMPLE_PERIOD_S)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall_s = time.perf_counter() - started
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        max_process_rss_kib = int(maxrss_file.read_text().split()[-1])
    except (ValueError, IndexError):
        max_process_rss_kib = 0
    maxrss_file.unlink()
    return Measurement(
        wall_s=wall_s,
        tree_cpu_s=usage.ru_utime + usage.ru_stime,
        tools_cpu_s=wrappers.take_cpu_s() if wrappers else 0.0,
        peak_tree_rss_mib=sampler.peak_bytes / MIB,
        max_process_rss_mib=max_process_rss_kib / 1024,
        exit_code=proc.returncode,
    )
