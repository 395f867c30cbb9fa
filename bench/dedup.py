"""What the directory format stores over a week and a day (issue 14): 8 daily backups with
BACKUP_FORMAT=directory against 8 full custom-format backups, in two scenarios.

    .venv/bin/python bench/dedup.py [--scenario partitioned|churn|all] [--days 8]
                                    [--partitioned-mb 400] [--churn-mb 300] [--json PATH|-]

- ``partitioned``: an ``events`` table in 12 monthly partitions; only the newest (the current
  month, half full on day 1) receives the day's inserts (a thirtieth of a month) and updates (1 %
  of its rows); ``users`` (2 % of its rows touched a day), ``products`` and ``settings`` (static).
- ``churn``: three tables of events-like rows; each day 2 % of each table's rows, chosen at
  random, are updated, then ``VACUUM`` (as an aggressive autovacuum would; the default one would
  wait for 20 %): every table changes every day.

Each scenario gets a fresh PostgreSQL 15 cluster (tests/fixtures/pgcluster.py). Each day the
day's change is applied (not on day 1), then the real job runs twice (``entrypoint.py backup``):
to one file:// destination with BACKUP_FORMAT=directory (BACKUP_JOBS=2), to another with the
custom format. Retention deletes nothing (BACKUP_RETENTION_DAYS=36500, BACKUP_KEEP_MIN=1000).
After each day every file under each destination is counted: objects, manifests, the dedup key
and the run history. Nothing is asserted: it prints a table, bytes are deterministic enough that
one run tells.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import machine  # noqa: E402
from data import EVENT_ROW_BYTES, EVENT_VALUES  # noqa: E402

from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

DATABASE = "shop"
MONTHS = 12
DAYS_PER_MONTH = 30
NEWEST_FILLED_DAYS = 15  # the current month on day 1: half full
CHURN_TABLES = ("orders", "customers", "ledger")
CHURN_SHARE = 0.02


# -- scenario (a): partitioned, append-mostly ---------------------------------------------------


def month_rows(megabytes: float) -> int:
    """Rows of one full month, so that the 11 full months and the half-full newest one make
    about ``megabytes`` of events on disk."""
    months = MONTHS - 1 + NEWEST_FILLED_DAYS / DAYS_PER_MONTH
    return max(DAYS_PER_MONTH, int(megabytes * 1e6 / EVENT_ROW_BYTES / months))


def _insert_events(cluster: Cluster, first: int, rows: int, month: int, days: tuple) -> None:
    """Rows ``first``.. of ``month`` (0-11 of 2025), spread evenly from day ``days[0]`` to
    day ``days[1]`` of the month."""
    day_from, day_to = days
    for start in range(first, first + rows, 500_000):
        end = min(start + 500_000, first + rows) - 1
        cluster.execute(
            DATABASE,
            f"INSERT INTO events SELECT g, date '2025-01-01' + interval '{month} months' "
            f"+ interval '{day_from} days' "
            f"+ (g - {first}) * (interval '{day_to - day_from} days' / {rows}), "
            f"{EVENT_VALUES} FROM generate_series({start}, {end}) g",
        )


def build_partitioned(cluster: Cluster, megabytes: float) -> Callable[[int], None]:
    rows = month_rows(megabytes)
    partitions = "".join(
        f"CREATE TABLE events_2025_{m + 1:02d} PARTITION OF events FOR VALUES FROM "
        f"('2025-{m + 1:02d}-01') TO ('{2025 + (m + 1) // 12}-{(m + 1) % 12 + 1:02d}-01');"
        for m in range(MONTHS)
    )
    cluster.execute(
        DATABASE,
        "CREATE TABLE events (id bigint, at timestamptz NOT NULL, kind text, payload jsonb, "
        "note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
        f"{partitions}"
        "CREATE TABLE users (id int PRIMARY KEY, name text, last_seen timestamptz);"
        "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric);"
        "CREATE TABLE settings (name text PRIMARY KEY, value text);"
        "INSERT INTO users SELECT g, 'user ' || md5(g::text), '2025-12-01' "
        "FROM generate_series(1, 20000) g;"
        "INSERT INTO products SELECT g, 'product ' || g, (g % 1000) / 10.0 "
        "FROM generate_series(1, 2000) g;"
        "INSERT INTO settings SELECT 'setting_' || g, md5(g::text) FROM generate_series(1, 50) g;",
    )
    for month in range(MONTHS - 1):
        _insert_events(cluster, month * rows + 1, rows, month, (0, 28))
    newest = (MONTHS - 1) * rows + 1
    per_day = rows // DAYS_PER_MONTH
    _insert_events(cluster, newest, per_day * NEWEST_FILLED_DAYS, MONTHS - 1, (0, 15))
    cluster.execute(DATABASE, "VACUUM ANALYZE")
    state = {"next": newest + per_day * NEWEST_FILLED_DAYS}

    def change(day: int) -> None:
        """Day ``day``'s inserts and updates: the newest partition and ``users`` only."""
        today = NEWEST_FILLED_DAYS + day - 1
        _insert_events(cluster, state["next"], per_day, MONTHS - 1, (today, today + 1))
        state["next"] += per_day
        cluster.execute(
            DATABASE,
            f"UPDATE events_2025_12 SET kind = 'refund', note = note || ' day {day}' "
            f"WHERE id % 100 = {day};"
            f"UPDATE users SET last_seen = '2025-12-{NEWEST_FILLED_DAYS + day:02d}' "
            f"WHERE id % 50 = {day};",
        )
        cluster.execute(DATABASE, "VACUUM ANALYZE events_2025_12, users")

    return change


# -- scenario (b): uniform churn ----------------------------------------------------------------


def build_churn(cluster: Cluster, megabytes: float) -> Callable[[int], None]:
    rows = max(1000, int(megabytes * 1e6 / EVENT_ROW_BYTES / len(CHURN_TABLES)))
    for number, table in enumerate(CHURN_TABLES):
        cluster.execute(
            DATABASE,
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, at timestamptz, kind text, "
            "payload jsonb, note text)",
        )
        first = number * rows + 1  # three tables, three different contents
        for start in range(first, first + rows, 500_000):
            end = min(start + 500_000, first + rows) - 1
            cluster.execute(
                DATABASE,
                f"INSERT INTO {table} SELECT g, timestamptz '2025-01-01' + g * interval '1 s', "
                f"{EVENT_VALUES} FROM generate_series({start}, {end}) g",
            )
    cluster.execute(DATABASE, "VACUUM ANALYZE")

    def change(day: int) -> None:
        """2 % of each table's rows, at random, then VACUUM."""
        for table in CHURN_TABLES:
            cluster.execute(
                DATABASE,
                f"UPDATE {table} SET kind = 'changed', note = md5(random()::text) || note "
                f"WHERE random() < {CHURN_SHARE}",
            )
        cluster.execute(DATABASE, f"VACUUM ANALYZE {', '.join(CHURN_TABLES)}")

    return change


SCENARIOS = {"partitioned": build_partitioned, "churn": build_churn}


# -- the runs -----------------------------------------------------------------------------------


def tree_bytes(root: Path) -> int:
    """Every file under ``root``: objects, manifests, the dedup key, the run history."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run_backup(cluster: Cluster, bindir: Path, work: Path, url: str, log: Path, **extra) -> None:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "TMPDIR": str(work / "tmp"),
        **cluster.env(DATABASE),
        "BACKUP_DESTINATIONS": url,
        "BACKUP_LOCK_DIR": str(work / "lock"),
        "BACKUP_PROGRESS_SECONDS": "0",
        "BACKUP_PG_BIN_DIRS": str(bindir),
        "BACKUP_RETENTION_DAYS": "36500",
        "BACKUP_KEEP_MIN": "1000",
        **extra,
    }
    with open(log, "ab") as err:
        code = subprocess.run(
            [sys.executable, str(REPO / "entrypoint.py"), "backup"],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        ).returncode
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"backup to {url} exited {code}\n{tail}")


def run_scenario(name: str, megabytes: float, days: int, bindir: Path, out) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"pgbackup-dedup-{name}-"))
    work.chmod(0o755)  # the server runs as postgres, under work/pg
    for sub in ("tmp", "lock", "logs"):
        (work / sub).mkdir()
    cluster = Cluster(bindir, root=work / "pg")
    rows = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        cluster.start()
        stack.callback(cluster.stop)
        started = time.perf_counter()
        cluster.create_database(DATABASE)
        change = SCENARIOS[name](cluster, megabytes)
        with cluster.connect(DATABASE) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        version = cluster.version
        print(
            f"{name}: database {size / 1e6:.0f} MB on disk, made in "
            f"{time.perf_counter() - started:.0f} s",
            file=out,
            flush=True,
        )
        directory, custom = work / "dest-directory", work / "dest-custom"
        for day in range(1, days + 1):
            if day > 1:
                change(day)
            log = work / "logs" / f"day{day}.log"
            run_backup(
                cluster,
                bindir,
                work,
                f"file://{directory}",
                log,
                BACKUP_FORMAT="directory",
                BACKUP_JOBS="2",
            )
            run_backup(cluster, bindir, work, f"file://{custom}", log)
            row = {"day": day, "directory_bytes": tree_bytes(directory)}
            row["custom_bytes"] = tree_bytes(custom)
            row["ratio"] = row["directory_bytes"] / row["custom_bytes"]
            row["directory_new_bytes"] = row["directory_bytes"] - (
                rows[-1]["directory_bytes"] if rows else 0
            )
            row["custom_new_bytes"] = row["custom_bytes"] - (
                rows[-1]["custom_bytes"] if rows else 0
            )
            rows.append(row)
            print(
                f"  day {day}: directory {row['directory_bytes'] / 1e6:8.1f} MB "
                f"(+{row['directory_new_bytes'] / 1e6:.1f}), custom "
                f"{row['custom_bytes'] / 1e6:8.1f} MB (+{row['custom_new_bytes'] / 1e6:.1f}), "
                f"{row['ratio']:.2f}x",
                file=out,
                flush=True,
            )
    return {
        "scenario": name,
        "megabytes": megabytes,
        "database_bytes": size,
        "server_version": version,
        "days": rows,
    }


def table(result: dict) -> list[str]:
    lines = [
        f"{result['scenario']} ({result['database_bytes'] / 1e6:.0f} MB on disk)",
        "| day | directory: stored so far MB | (that day) | custom, a full backup a day: "
        "stored so far MB | (that day) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["days"]:
        lines.append(
            f"| {r['day']} | {r['directory_bytes'] / 1e6:.1f} | "
            f"+{r['directory_new_bytes'] / 1e6:.1f} | {r['custom_bytes'] / 1e6:.1f} | "
            f"+{r['custom_new_bytes'] / 1e6:.1f} | {r['ratio']:.2f}x |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--days", type=int, default=8, help="daily backups (min 2)")
    parser.add_argument("--partitioned-mb", type=float, default=400, help="events on disk")
    parser.add_argument("--churn-mb", type=float, default=300, help="the three tables on disk")
    parser.add_argument("--json", metavar="PATH", help="every day's bytes as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    if args.days < 2:
        parser.error("--days must be 2 or more")
    bindir = find_bindir(15)
    if bindir is None:
        sys.exit("PostgreSQL 15 is not installed: scripts/install-deps.sh runtime")
    out = sys.stderr if args.json == "-" else sys.stdout
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    sizes = {"partitioned": args.partitioned_mb, "churn": args.churn_mb}
    results = [run_scenario(name, sizes[name], args.days, bindir, out) for name in names]
    print(file=out)
    for result in results:
        for line in table(result):
            print(line, file=out)
        print(file=out)
    info = machine.describe(REPO, bindir, results[0]["server_version"], sys.executable)
    for line in machine.summary_lines(info):
        print(line, file=out)
    if args.json:
        text = json.dumps({"machine": info, "scenarios": results}, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
