"""Many small databases (issue 23, part 2): one run of the job over --databases databases of
1 to 5 MB each, to SeaweedFS S3, at BACKUP_PARALLEL_DATABASES = 1, 2, 4, against the sum of
bare ``pg_dump -Fc`` times of the same databases.

    .venv/bin/python bench/many.py [--databases 200] [--parallel 1,2,4] [--rounds 1] [--json -]

Builds a throwaway PostgreSQL 15 cluster: five template databases of 1, 2, 3, 4 and 5 MB
(pgbench-like rows), then ``CREATE DATABASE ... TEMPLATE`` copies of them in turn (a file copy
on the server: 200 databases in well under a minute). Each way runs in its own bucket; rounds
are interleaved (round 1 runs every N once, then round 2, ...). Columns: wall seconds (median),
speed-up against N = 1, the ratio to the sum of bare pg_dump times, the peak RSS of the job's
process tree (summed over the tree, every 20 ms: ``measure.py``) and of its largest process.
The target (issue 23): N = 4 at least 2.5x faster than N = 1, under 150 MB. Nothing is
asserted: it is a report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import machine  # noqa: E402
from measure import run_measured  # noqa: E402

from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

TEMPLATE_MB = (1, 2, 3, 4, 5)
# pgbench_accounts-like rows: about 8,000 per MB on disk with this filler.
ROWS_PER_MB = 8_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=200, help="how many small databases")
    parser.add_argument(
        "--parallel", default="1,2,4", help="the BACKUP_PARALLEL_DATABASES values (1,2,4)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (min 1)")
    parser.add_argument("--json", metavar="PATH", help="every measurement as JSON ('-': stdout)")
    parser.add_argument("--logs", metavar="DIR", help="keep the stderr of every run in DIR")
    return parser.parse_args(argv)


def create_databases(cluster: Cluster, count: int) -> list[str]:
    """Five templates of 1-5 MB, then ``count`` copies of them in turn; their names."""
    for mb in TEMPLATE_MB:
        template = f"template_{mb}mb"
        cluster.create_database(template)
        cluster.execute(
            template,
            "CREATE TABLE accounts (aid int PRIMARY KEY, bid int, abalance int, "
            "filler char(84)); "
            f"INSERT INTO accounts SELECT g, g % 100, 0, '' "
            f"FROM generate_series(1, {ROWS_PER_MB * mb}) g",
        )
        cluster.execute(template, "VACUUM ANALYZE accounts")
    names = [f"tenant_{n:04d}" for n in range(count)]
    with cluster.connect() as conn:
        for n, name in enumerate(names):
            mb = TEMPLATE_MB[n % len(TEMPLATE_MB)]
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "template_{mb}mb"')
    return names


def bare_dumps(bindir: Path, cluster: Cluster, names: list[str]) -> tuple[float, int]:
    """Bare ``pg_dump -Fc`` of each database to /dev/null, one after the other: the summed
    wall seconds, and the summed bytes of the dumps (the default compression)."""
    total_s = 0.0
    total_bytes = 0
    for name in names:
        started = time.perf_counter()
        out = subprocess.run(
            [str(bindir / "pg_dump"), "-Fc", "--no-password", name],
            env={"PATH": "/usr/bin:/bin", **cluster.env(name)},
            capture_output=True,
            check=True,
        ).stdout
        total_s += time.perf_counter() - started
        total_bytes += len(out)
    return total_s, total_bytes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stderr if args.json == "-" else sys.stdout
    levels = [int(v) for v in args.parallel.split(",")]
    bindir = find_bindir(15)
    if bindir is None:
        sys.exit("PostgreSQL 15 is not installed: scripts/install-deps.sh runtime")
    work = Path(tempfile.mkdtemp(prefix="pgbackup-bench-many-"))
    work.chmod(0o755)
    cluster = Cluster(bindir, root=work / "pg")
    runs: list[dict] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        cluster.start()
        stack.callback(cluster.stop)
        started = time.perf_counter()
        names = create_databases(cluster, args.databases)
        made_s = time.perf_counter() - started
        print(f"{len(names)} databases made in {made_s:.0f} s", file=out, flush=True)
        bare_s, bare_bytes = bare_dumps(bindir, cluster, names)
        print(
            f"bare pg_dump -Fc, one after the other: {bare_s:.1f} s, {bare_bytes / 1e6:.0f} MB",
            file=out,
            flush=True,
        )
        from tests.fixtures.seaweed import running_seaweed

        s3 = stack.enter_context(running_seaweed(work / "weed"))
        (work / "lock").mkdir()
        (work / "logs").mkdir()
        excluded = ",".join(["postgres", *(f"template_{mb}mb" for mb in TEMPLATE_MB)])
        for round_no in range(1, max(1, args.rounds) + 1):
            for level in levels:
                bucket = s3.create_bucket(f"many-{level}-{round_no}")
                env = {
                    "PATH": "/usr/local/bin:/usr/bin:/bin",
                    "HOME": str(work),
                    "LANG": "C.UTF-8",
                    **cluster.env("postgres"),
                    "BACKUP_DATABASES": "all",
                    "BACKUP_EXCLUDE_DATABASES": excluded,
                    "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
                    "BACKUP_PARALLEL_DATABASES": str(level),
                    "BACKUP_LOCK_DIR": str(work / "lock"),
                    "BACKUP_PROGRESS_SECONDS": "0",
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                    "AWS_REGION": s3.region,
                    "S3_ENDPOINT_URL": s3.endpoint_url,
                }
                log = work / "logs" / f"backup-n{level}-round{round_no}.log"
                measured = run_measured(
                    [sys.executable, str(REPO / "entrypoint.py"), "backup"],
                    env,
                    None,
                    REPO,
                    stderr_path=log,
                )
                row = {
                    "parallel": level,
                    "round": round_no,
                    "wall_s": round(measured.wall_s, 2),
                    "peak_tree_rss_mib": round(measured.peak_tree_rss_mib, 1),
                    "max_process_rss_mib": round(measured.max_process_rss_mib, 1),
                    "exit_code": measured.exit_code,
                }
                runs.append(row)
                print(json.dumps(row), file=out, flush=True)
        info = machine.describe(REPO, bindir, cluster.version, sys.executable)
        if args.logs:
            shutil.copytree(work / "logs", args.logs, dirs_exist_ok=True)
    medians = {
        level: {
            key: statistics.median(r[key] for r in runs if r["parallel"] == level)
            for key in ("wall_s", "peak_tree_rss_mib", "max_process_rss_mib")
        }
        for level in levels
    }
    base = medians[levels[0]]["wall_s"]
    print(file=out)
    print(
        f"{'N':>3} {'wall s':>8} {'speed-up':>9} {'x bare':>7} {'peak tree MiB':>14} "
        f"{'max proc MiB':>13}",
        file=out,
    )
    for level, m in medians.items():
        print(
            f"{level:>3} {m['wall_s']:>8.1f} {base / m['wall_s']:>8.2f}x "
            f"{m['wall_s'] / bare_s:>7.2f} {m['peak_tree_rss_mib']:>14.0f} "
            f"{m['max_process_rss_mib']:>13.0f}",
            file=out,
        )
    print(
        f"{len(names)} databases of 1-5 MB, bare pg_dump -Fc summed {bare_s:.1f} s; "
        f"medians of {args.rounds} round(s)",
        file=out,
    )
    for line in machine.summary_lines(info):
        print(line, file=out)
    failed = [r for r in runs if r["exit_code"] != 0]
    for row in failed:
        print(f"FAILED: N={row['parallel']} in round {row['round']}", file=out)
    if args.json:
        document = {
            "machine": info,
            "databases": len(names),
            "bare_pg_dump_s": bare_s,
            "bare_pg_dump_bytes": bare_bytes,
            "runs": runs,
            "medians": medians,
        }
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
