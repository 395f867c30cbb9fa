"""The benchmark's database: about ``gb`` GB on disk, mixed like a real one.

- 60 %: pgbench's schema and rows (``pgbench_accounts`` and friends): narrow rows whose
  ``filler char(84)`` is blank padding, so this part compresses very well.
- 40 %: ``events``: text (md5 hex, which does not compress, plus repeated words) and jsonb.
The row sizes below are on-disk bytes per row (heap + primary key), measured on PostgreSQL 15.
"""

from __future__ import annotations

from tests.fixtures.pgcluster import Cluster

ACCOUNT_ROW_BYTES = 157
EVENT_ROW_BYTES = 313
ACCOUNTS_SHARE = 0.6
ACCOUNTS_PER_BRANCH = 100_000  # pgbench's scale: 1 branch, 10 tellers per 100,000 accounts
BATCH_ROWS = 500_000
# An event's kind, payload and note from g, its row number (``events``, and bench/dedup.py's).
EVENT_VALUES = (
    "(ARRAY['click','view','buy','login'])[1 + g % 4], "
    "jsonb_build_object('user', g % 100000, 'amount', (g::bigint * 7919) % 100000, "
    "'tags', jsonb_build_array('a' || g % 13, 'b' || g % 17)), "
    "md5(g::text) || ' ' || md5((g::bigint * 31)::text) || ' ' "
    "|| repeat('lorem ipsum ', 1 + g % 12)"
)


def fill(cluster: Cluster, database: str, gigabytes: float) -> None:
    cluster.create_database(database)
    accounts = max(ACCOUNTS_PER_BRANCH, int(gigabytes * 1e9 * ACCOUNTS_SHARE / ACCOUNT_ROW_BYTES))
    events = max(1000, int(gigabytes * 1e9 * (1 - ACCOUNTS_SHARE) / EVENT_ROW_BYTES))
    branches = max(1, accounts // ACCOUNTS_PER_BRANCH)
    cluster.execute(
        database,
        "CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));"
        "CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, "
        "filler char(84));"
        "CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, "
        "filler char(84));"
        "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, "
        "filler char(22));"
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, kind text, payload jsonb, "
        "note text);"
        f"INSERT INTO pgbench_branches SELECT g, 0 FROM generate_series(1, {branches}) g;"
        f"INSERT INTO pgbench_tellers SELECT g, 1 + (g - 1) / 10, 0 "
        f"FROM generate_series(1, {branches * 10}) g;"
        f"INSERT INTO pgbench_history SELECT 1 + g % {branches * 10}, 1 + g % {branches}, "
        f"1 + (g::bigint * 7919) % {accounts}, (g * 31) % 5000 - 2500, now() - g * interval '1 s' "
        f"FROM generate_series(1, {max(1000, accounts // 100)}) g;",
    )
    # Each row's values from g, the row number; inserted BATCH_ROWS at a time.
    tables = {
        "pgbench_accounts": (
            accounts,
            f"g, 1 + (g - 1) / {ACCOUNTS_PER_BRANCH}, (g::bigint * 7919) % 20000 - 10000, ''",
        ),
        "events": (
            events,
            f"g, now() - g * interval '1 second', {EVENT_VALUES}",
        ),
    }
    for table, (rows, values) in tables.items():
        for start in range(0, rows, BATCH_ROWS):
            end = min(start + BATCH_ROWS, rows)
            cluster.execute(
                database,
                f"INSERT INTO {table} SELECT {values} FROM generate_series({start + 1}, {end}) g",
            )
    cluster.execute(database, "VACUUM ANALYZE")


def size_bytes(cluster: Cluster, database: str) -> int:
    with cluster.connect(database) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
