"""Many small databases (issue 23, part 2): one run of the job over --databases databases of
1 to 5 MB each, to SeaweedFS S3, at BACKUP_PARALLEL_DATABASES = 1, 2, 4, against the sum of
bare ``pg_dump -Fc`` times of the same databases.

    .venv/bin/python bench/many.py [--databases 200] [--parallel 1,2,4] [--rounds 1] [--json -]

Builds a throwaway PostgreSQL 15 cluster: five template databases of 1, 2, 3, 4 and 5 MB
(pgbench-like rows), then ``CREATE DATABASE ... TEMPLATE`` copies of them in turn (a file copy
on the server: 200 databases in well under a minute). Each way runs in its own bucket; rounds
are interleaved (round 1 runs every N once, then round 2, ...). Columns: wall seconds (median,
and the spread over the rounds), speed-up against N = 1, the ratio to the sum of bare pg_dump
times, the CPU per database of the job's process tree (user + system of everything it ran,
``measure.py``; load-insensitive, unlike the wall time on a shared machine), of which the job's
own (the tree less pg_dump, pg_restore and pg_dumpall, run through ``time`` wrappers), the CPU
per database the runs cost the PostgreSQL server and SeaweedFS (from /proc: they share the same
cores), the peak RSS of the job's process tree (summed over the tree, every 20 ms) and of its
largest process.
The target (issue 23): N = 4 at least 2.5x faster than N = 1, under 150 MB. Nothing is
asserted: it is a report.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
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
from measure import ToolWrappers, run_measured  # noqa: E402

from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

TEMPLATE_MB = (1, 2, 3, 4, 5)
# pgbench_accounts-like rows: about 8,000 per MB on disk with this filler.
ROWS_PER_MB = 8_000
KEYS = (
    "wall_s",
    "tree_cpu_ms_per_db",
    "own_cpu_ms_per_db",
    "server_cpu_ms_per_db",
    "s3_cpu_ms_per_db",
    "peak_tree_rss_mib",
    "max_process_rss_mib",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=200, help="how many small databases")
    parser.add_argument(
        "--parallel", default="1,2,4", help="the BACKUP_PARALLEL_DATABASES values (1,2,4)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (min 1)")
    parser.add_argument("--json", metavar="PATH", help="every measurement as JSON ('-': stdout)")
    parser.add_argument("--logs", metavar="DIR", help="keep the stderr of every run in DIR")
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="also run the job of another checkout (e.g. `git worktree add DIR main`), "
        "interleaved with this one's on the same cluster, for a before/after under one load",
    )
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


def _process_table() -> tuple[dict[int, list[int]], dict[int, float], dict[int, str]]:
    """Every process's children, user + system seconds (its own and its reaped children's)
    and name, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        pid = int(entry)
        names[pid] = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(pid)
        cpu[pid] = sum(int(v) for v in fields[11:15]) / tick
    return children, cpu, names


def _descendants(children: dict[int, list[int]], root: int) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def services_cpu_s(cluster: Cluster) -> tuple[float, float]:
    """The CPU seconds the PostgreSQL server (its backends included, once ended) and this
    bench's SeaweedFS have used so far: what the runs make them do takes the same 2 cores."""
    children, cpu, names = _process_table()
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    weed = [p for p in _descendants(children, os.getpid()) if names.get(p) == "weed"]
    weed_tree = {p for root in weed for p in _descendants(children, root)}
    return (
        sum(cpu.get(p, 0.0) for p in _descendants(children, postmaster)),
        sum(cpu.get(p, 0.0) for p in weed_tree),
    )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def print_table(
    out, code: str, medians: dict[int, dict[str, float]], runs: list[dict], bare_s: float
) -> None:
    """One code's medians per N: wall (and spread), speed-up, CPU per database, memory."""
    base = next(iter(medians.values()))["wall_s"]
    print(file=out)
    print(
        f"{code:>7} {'N':>3} {'wall s':>8} {'spread s':>13} {'speed-up':>9} {'x bare':>7} "
        f"{'CPU ms/db':>10} {'own ms/db':>10} {'PG ms/db':>9} {'S3 ms/db':>9} "
        f"{'peak tree MiB':>14} {'max proc MiB':>13}",
        file=out,
    )
    for level, m in medians.items():
        walls = [r["wall_s"] for r in runs if r["parallel"] == level and r["code"] == code]
        print(
            f"{code:>7} {level:>3} {m['wall_s']:>8.1f} {min(walls):>6.1f}-{max(walls):<6.1f} "
            f"{base / m['wall_s']:>8.2f}x {m['wall_s'] / bare_s:>7.2f} "
            f"{m['tree_cpu_ms_per_db']:>10.1f} {m['own_cpu_ms_per_db']:>10.1f} "
            f"{m['server_cpu_ms_per_db']:>9.1f} {m['s3_cpu_ms_per_db']:>9.1f} "
            f"{m['peak_tree_rss_mib']:>14.0f} {m['max_process_rss_mib']:>13.0f}",
            file=out,
        )


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
        server_before = services_cpu_s(cluster)[0]
        tools_before = _children_cpu_s()
        bare_s, bare_bytes = bare_dumps(bindir, cluster, names)
        bare_cpu = {
            "pg_dump_cpu_ms_per_db": 1000 * (_children_cpu_s() - tools_before) / len(names),
            "server_cpu_ms_per_db": 1000
            * (services_cpu_s(cluster)[0] - server_before)
            / len(names),
        }
        print(
            f"bare pg_dump -Fc, one after the other: {bare_s:.1f} s, {bare_bytes / 1e6:.0f} MB; "
            f"CPU per database: pg_dump {bare_cpu['pg_dump_cpu_ms_per_db']:.1f} ms, "
            f"PostgreSQL server {bare_cpu['server_cpu_ms_per_db']:.1f} ms",
            file=out,
            flush=True,
        )
        from tests.fixtures.seaweed import running_seaweed

        s3 = stack.enter_context(running_seaweed(work / "weed"))
        (work / "lock").mkdir()
        (work / "logs").mkdir()
        wrappers = ToolWrappers(work / "bin", bindir)
        excluded = ",".join(["postgres", *(f"template_{mb}mb" for mb in TEMPLATE_MB)])
        codes = {
            "this": REPO,
            **({"compare": Path(args.compare).resolve()} if args.compare else {}),
        }
        for round_no, (code, code_dir), level in itertools.product(
            range(1, max(1, args.rounds) + 1), codes.items(), levels
        ):
            bucket = s3.create_bucket(f"many-{code}-{level}-{round_no}")
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
                "BACKUP_PG_BIN_DIRS": str(wrappers.bindir),
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "AWS_REGION": s3.region,
                "S3_ENDPOINT_URL": s3.endpoint_url,
            }
            log = work / "logs" / f"backup-{code}-n{level}-round{round_no}.log"
            services_before = services_cpu_s(cluster)
            measured = run_measured(
                [sys.executable, str(code_dir / "entrypoint.py"), "backup"],
                env,
                wrappers,
                code_dir,
                stderr_path=log,
            )
            postgres_s, weed_s = (
                after - before
                for after, before in zip(services_cpu_s(cluster), services_before, strict=True)
            )
            row = {
                "code": code,
                "parallel": level,
                "round": round_no,
                "wall_s": round(measured.wall_s, 2),
                "tree_cpu_ms_per_db": round(1000 * measured.tree_cpu_s / len(names), 1),
                "tools_cpu_ms_per_db": round(1000 * measured.tools_cpu_s / len(names), 1),
                "own_cpu_ms_per_db": round(1000 * measured.own_cpu_s / len(names), 1),
                "server_cpu_ms_per_db": round(1000 * postgres_s / len(names), 1),
                "s3_cpu_ms_per_db": round(1000 * weed_s / len(names), 1),
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
        code: {
            level: {
                key: statistics.median(
                    r[key] for r in runs if r["parallel"] == level and r["code"] == code
                )
                for key in KEYS
            }
            for level in levels
        }
        for code in codes
    }
    for code in codes:
        print_table(out, code, medians[code], runs, bare_s)
    print(
        f"{len(names)} databases of 1-5 MB, bare pg_dump -Fc summed {bare_s:.1f} s; "
        f"medians of {args.rounds} round(s)",
        file=out,
    )
    for line in machine.summary_lines(info):
        print(line, file=out)
    failed = [r for r in runs if r["exit_code"] != 0]
    for row in failed:
        print(f"FAILED: {row['code']} N={row['parallel']} in round {row['round']}", file=out)
    if args.json:
        document = {
            "machine": info,
            "databases": len(names),
            "bare_pg_dump_s": bare_s,
            "bare_pg_dump_bytes": bare_bytes,
            "bare_pg_dump_cpu": bare_cpu,
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
