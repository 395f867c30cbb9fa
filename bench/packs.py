"""Thousands of tables (issue 23, part 3): one database of --tables small tables and two
larger ones, backed up to SeaweedFS S3 with BACKUP_JOBS=2 in the custom format, in the
directory format with packs (the default, BACKUP_PACK_BELOW_KB=1024) and without
(BACKUP_PACK_BELOW_KB=0).

    .venv/bin/python bench/packs.py [--tables 3000] [--large-mb 50] [--rounds 1] [--json -]

Builds a throwaway PostgreSQL 15 cluster. Each way runs in its own bucket; rounds are
interleaved. Columns: wall seconds (median), the ratio to the custom format's, the objects
the backup left in the bucket, the peak RSS of the job's process tree (summed over the tree,
every 20 ms: ``measure.py``) and of its largest process, and the wall seconds of a ``restore``
of that backup into a new database. The targets (issue 23): the directory
format within 1.5x of the custom format's wall time and under 100 MiB. Nothing is asserted:
it is a report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import machine  # noqa: E402
from measure import run_measured  # noqa: E402

from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

DATABASE = "many_tables"
WAYS = {
    "custom": {"BACKUP_FORMAT": "custom"},
    "directory": {"BACKUP_FORMAT": "directory"},
    "directory-no-packs": {"BACKUP_FORMAT": "directory", "BACKUP_PACK_BELOW_KB": "0"},
}
# md5 text and a filler: about 7,000 rows per MB of COPY text.
ROWS_PER_MB = 7_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=3000, help="how many small tables")
    parser.add_argument("--large-mb", type=int, default=50, help="each of the two large tables")
    parser.add_argument("--ways", default=",".join(WAYS), help="which ways, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (min 1)")
    parser.add_argument("--json", metavar="PATH", help="every measurement as JSON ('-': stdout)")
    parser.add_argument("--logs", metavar="DIR", help="keep the stderr of every run in DIR")
    parser.add_argument(
        "--pure-psycopg",
        action="store_true",
        help="psycopg's pure-Python build on the system's libpq (PSYCOPG_IMPL=python), as the "
        "image runs it, not the test environment's binary build (4 MiB more)",
    )
    return parser.parse_args(argv)


def create_database(cluster: Cluster, tables: int, large_mb: int) -> None:
    cluster.create_database(DATABASE)
    for first in range(1, tables + 1, 500):  # one transaction's locks: 500 tables at a time
        last = min(tables, first + 499)
        cluster.execute(
            DATABASE,
            f"""DO $$ BEGIN
              FOR i IN {first}..{last} LOOP
                EXECUTE format('CREATE TABLE t_%s (id int PRIMARY KEY, v text)', i);
                EXECUTE format(
                  'INSERT INTO t_%s SELECT g, md5(g || %L || %s) FROM generate_series(1, %s) g',
                  i, '-', i, 1 + i % 40);
              END LOOP;
            END $$""",
        )
    for name in ("large_a", "large_b"):
        cluster.execute(
            DATABASE,
            f"CREATE TABLE {name} AS SELECT g AS id, md5(g::text) || repeat('{name[-1]}', 100) "
            f"AS pad FROM generate_series(1, {ROWS_PER_MB * large_mb}) g",
        )
    cluster.execute(DATABASE, "VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stderr if args.json == "-" else sys.stdout
    ways = [w for w in args.ways.split(",") if w]
    bindir = find_bindir(15)
    if bindir is None:
        sys.exit("PostgreSQL 15 is not installed: scripts/install-deps.sh runtime")
    work = Path(tempfile.mkdtemp(prefix="pgbackup-bench-packs-"))
    work.chmod(0o755)
    cluster = Cluster(bindir, root=work / "pg")
    runs: list[dict] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        cluster.start()
        stack.callback(cluster.stop)
        started = time.perf_counter()
        create_database(cluster, args.tables, args.large_mb)
        print(
            f"{args.tables} small tables and 2 of {args.large_mb} MB made in "
            f"{time.perf_counter() - started:.0f} s",
            file=out,
            flush=True,
        )
        from tests.fixtures.seaweed import running_seaweed

        s3 = stack.enter_context(running_seaweed(work / "weed"))
        client = s3.client()
        for folder in ("lock", "logs", "tmp"):
            (work / folder).mkdir()
        for round_no in range(1, max(1, args.rounds) + 1):
            for way in ways:
                bucket = s3.create_bucket(f"packs-{way}-{round_no}")
                env = {
                    "PATH": "/usr/local/bin:/usr/bin:/bin",
                    "HOME": str(work),
                    "LANG": "C.UTF-8",
                    "TMPDIR": str(work / "tmp"),
                    **cluster.env(DATABASE),
                    "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
                    "BACKUP_JOBS": "2",
                    "BACKUP_LOCK_DIR": str(work / "lock"),
                    "BACKUP_PROGRESS_SECONDS": "0",
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                    "AWS_REGION": s3.region,
                    "S3_ENDPOINT_URL": s3.endpoint_url,
                    **WAYS[way],
                    **({"PSYCOPG_IMPL": "python"} if args.pure_psycopg else {}),
                }
                log = work / "logs" / f"backup-{way}-round{round_no}.log"
                measured = run_measured(
                    [sys.executable, str(REPO / "entrypoint.py"), "backup"],
                    env,
                    None,
                    REPO,
                    stderr_path=log,
                )
                restored = run_measured(
                    [
                        sys.executable,
                        str(REPO / "entrypoint.py"),
                        "restore",
                        "--target-db",
                        f"restored_{way.replace('-', '_')}_{round_no}",
                        "--force",
                    ],
                    env,
                    None,
                    REPO,
                    stderr_path=work / "logs" / f"restore-{way}-round{round_no}.log",
                )
                objects = sum(
                    page.get("KeyCount", 0)
                    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                )
                row = {
                    "way": way,
                    "round": round_no,
                    "wall_s": round(measured.wall_s, 2),
                    "objects": objects,
                    "peak_tree_rss_mib": round(measured.peak_tree_rss_mib, 1),
                    "max_process_rss_mib": round(measured.max_process_rss_mib, 1),
                    "exit_code": measured.exit_code or restored.exit_code,
                    "restore_wall_s": round(restored.wall_s, 2),
                    "restore_peak_tree_rss_mib": round(restored.peak_tree_rss_mib, 1),
                }
                runs.append(row)
                print(json.dumps(row), file=out, flush=True)
        info = machine.describe(REPO, bindir, cluster.version, sys.executable)
        if args.logs:
            shutil.copytree(work / "logs", args.logs, dirs_exist_ok=True)
    medians = {
        way: {
            key: statistics.median(r[key] for r in runs if r["way"] == way)
            for key in (
                "wall_s",
                "objects",
                "peak_tree_rss_mib",
                "max_process_rss_mib",
                "restore_wall_s",
            )
        }
        for way in ways
    }
    base = medians.get("custom", medians[ways[0]])["wall_s"]
    print(file=out)
    print(
        f"{'way':<20} {'wall s':>8} {'x custom':>9} {'objects':>8} {'peak tree MiB':>14} "
        f"{'max proc MiB':>13} {'restore s':>10}",
        file=out,
    )
    for way, m in medians.items():
        print(
            f"{way:<20} {m['wall_s']:>8.1f} {m['wall_s'] / base:>8.2f}x {m['objects']:>8.0f} "
            f"{m['peak_tree_rss_mib']:>14.0f} {m['max_process_rss_mib']:>13.0f} "
            f"{m['restore_wall_s']:>10.1f}",
            file=out,
        )
    print(
        f"{args.tables} small tables + 2 x {args.large_mb} MB, BACKUP_JOBS=2, SeaweedFS S3; "
        f"medians of {args.rounds} round(s)",
        file=out,
    )
    for line in machine.summary_lines(info):
        print(line, file=out)
    failed = [r for r in runs if r["exit_code"] != 0]
    for row in failed:
        print(f"FAILED: {row['way']} in round {row['round']}", file=out)
    if args.json:
        document = {"machine": info, "tables": args.tables, "runs": runs, "medians": medians}
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
