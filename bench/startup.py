"""What a run costs before it does anything: the CPU and peak RSS of ``entrypoint.py VERB``
for the short verbs and a backup of a small database to file://, against a bare interpreter
(``python -c pass``) measured in the same process.

    .venv/bin/python -m compileall -q backup    # PYTHONDONTWRITEBYTECODE: measure imports only
    .venv/bin/python bench/startup.py [--runs 10]

Each case runs --runs times in a new interpreter, as cron or Kubernetes runs the job; CPU is
RUSAGE_CHILDREN (the job and its children: pg_dump for a backup), peak RSS is GNU time's %M of
the Python process. Medians with the range; nothing is asserted (tests/e2e/test_imports.py holds
which modules a run imports).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import clean_environ  # noqa: E402
from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

CASES = (["--help"], ["backup"], ["list"], ["verify"], ["status"], ["check"])


def _measure(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """CPU seconds and peak RSS (MiB) of each of ``runs`` runs of ``argv``."""
    cpu, rss = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            ["/usr/bin/time", "-f", "RSS %M", *argv],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr[-2000:]}")
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        rss.append(int(done.stderr.strip().splitlines()[-1].split()[1]) / 1024)
    return sorted(cpu), sorted(rss)


def _line(name: str, cpu: list[float], rss: list[float], base_cpu: float) -> str:
    mid = len(cpu) // 2
    return (
        f"{name:10} {cpu[mid]:6.3f} [{cpu[0]:.3f}-{cpu[-1]:.3f}] {cpu[mid] / base_cpu:5.1f}x"
        f"   {rss[mid]:6.1f} [{rss[0]:.1f}-{rss[-1]:.1f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each case (median)")
    runs = parser.parse_args().runs
    bindir = find_bindir(15)
    if bindir is None:
        raise SystemExit("PostgreSQL 15 is missing (the tests' fixtures start one)")
    tmp = Path(tempfile.mkdtemp(prefix="pgbackup-startup-"))
    tmp.chmod(0o755)  # the server runs as postgres, under tmp/pg
    cluster = Cluster(bindir, tmp / "pg").start()
    try:
        cluster.create_sample_database("shop")
        (tmp / "dest").mkdir()
        env = {
            **clean_environ(),
            **cluster.env("shop"),
            "BACKUP_DESTINATIONS": f"file://{tmp / 'dest'}",
            "BACKUP_LOCK_DIR": str(tmp),
        }
        cpu, rss = _measure([sys.executable, "-c", "pass"], env, runs)
        base = cpu[len(cpu) // 2]
        print(f"{'case':10} {'CPU s/run [range]':>22} {'ratio':>6}   {'peak RSS MiB [range]'}")
        print(_line("python", cpu, rss, base))
        for args in CASES:
            cpu, rss = _measure([sys.executable, "entrypoint.py", *args], env, runs)
            print(_line(" ".join(args), cpu, rss, base), flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
