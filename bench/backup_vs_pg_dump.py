"""Backup throughput and memory against bare pg_dump, measured in one process, one run each.

    .venv/bin/python bench/backup_vs_pg_dump.py [--gb 1.1] [--s3]

Starts a throwaway PostgreSQL 15, fills a database of about --gb GB (table data), then times:
  baseline  pg_dump -Fc -Z0 > /dev/null
  job/local python entrypoint.py backup   -> file:// (zstd level 3)
  job/s3    python entrypoint.py backup   -> s3:// on a local SeaweedFS (with --s3)
and prints each wall time, its ratio to the baseline, and the job's peak RSS (from wait4).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

ROW_BYTES = 313  # approximate on-disk size of one generated row (table + index)


def run_measured(argv: list[str], env: dict[str, str], stdout=subprocess.DEVNULL):
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{argv[:3]} exited {code}:\n{stderr[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024  # MiB


def fill(cluster: Cluster, database: str, gigabytes: float) -> None:
    rows = int(gigabytes * 1e9 / ROW_BYTES)
    cluster.create_database(database)
    cluster.execute(
        database,
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, kind text, "
        "payload jsonb, note text)",
    )
    batch = 500_000
    for start in range(0, rows, batch):
        cluster.execute(
            database,
            f"INSERT INTO events SELECT g, now() - g * interval '1 second', "
            f"(ARRAY['click','view','buy','login'])[1 + g % 4], "
            f"jsonb_build_object('user', g % 100000, 'amount', (g::bigint * 7919) % 100000, "
            f"'tags', jsonb_build_array('a' || g % 13, 'b' || g % 17)), "
            f"md5(g::text) || ' ' || md5((g::bigint * 31)::text) || ' ' "
            f"|| repeat('lorem ipsum ', 1 + g % 12) "
            f"FROM generate_series({start + 1}, {min(start + batch, rows)}) g",
        )
    cluster.execute(database, "VACUUM ANALYZE events")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.1, help="database size on disk")
    parser.add_argument("--s3", action="store_true", help="also back up to a local SeaweedFS")
    args = parser.parse_args()

    bindir = find_bindir(15)
    assert bindir
    cluster = Cluster(bindir).start()
    work = Path(tempfile.mkdtemp(prefix="pgbackup-bench-"))
    try:
        started = time.perf_counter()
        fill(cluster, "bench", args.gb)
        with cluster.connect("bench") as conn:
            size = conn.execute("SELECT pg_database_size('bench')").fetchone()[0]
        print(
            f"database 'bench': {size / 1e9:.2f} GB on disk, filled in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "BACKUP_"))},
            **cluster.env("bench"),
            "BACKUP_LOCK_DIR": str(work),
            "BACKUP_PROGRESS_SECONDS": "0",
        }

        results = []
        base_s, base_mb = run_measured([str(bindir / "pg_dump"), "-Fc", "-Z0", "-d", "bench"], env)
        results.append(("pg_dump -Fc -Z0 > /dev/null", base_s, base_mb))
        job = [sys.executable, "entrypoint.py", "backup"]
        local = {**env, "BACKUP_DESTINATIONS": f"file://{work}/local"}
        results.append(("job -> file:// (zstd)", *run_measured(job, local)))
        stored = sum(p.stat().st_size for p in (work / "local").rglob("*.dump*"))
        if args.s3:
            from tests.fixtures.seaweed import running_seaweed

            with running_seaweed(work / "weed") as server:
                bucket = server.create_bucket()
                s3 = {
                    **env,
                    "BACKUP_DESTINATIONS": f"s3://{bucket}/bench",
                    "AWS_ACCESS_KEY_ID": server.access_key,
                    "AWS_SECRET_ACCESS_KEY": server.secret_key,
                    "AWS_REGION": server.region,
                    "S3_ENDPOINT_URL": server.endpoint_url,
                }
                results.append(("job -> s3:// SeaweedFS (zstd)", *run_measured(job, s3)))
                both = {**s3, "BACKUP_DESTINATIONS": f"s3://{bucket}/both,file://{work}/both"}
                results.append(("job -> s3:// + file:// (zstd)", *run_measured(job, both)))
        print(f"\ncompressed backup: {stored / 1e6:.0f} MB\n")
        print(f"{'run':<34}{'seconds':>9}{'ratio':>8}{'peak RSS MiB':>14}")
        for label, seconds, rss in results:
            print(f"{label:<34}{seconds:>9.1f}{seconds / base_s:>8.2f}{rss:>14.0f}")
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
