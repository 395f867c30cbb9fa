"""``verify --table T --restore-test``: a test restore of chosen tables alone, into a scratch
database dropped afterwards, and what it found: each table's rows counted (equal to the
manifest's exact count, when it recorded one: exit 5 otherwise) and an md5 of its rows, printed
with the query that computes the same on another copy (the live table, a restore elsewhere).

What is read is what ``restore --table`` reads (``restore/tables.py``): a directory-format
backup's ``toc.dat`` and the tables' files, each checked; a custom-format object whole, its
sha256 checked before the transaction commits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from backup.config import Config, PostgresConfig
from backup.errors import BackupError, ConfigError, IntegrityError
from backup.manifest.catalog import Entry
from backup.postgres import server as pg_server
from backup.postgres.toc_names import quote_ident
from backup.restore.steps import RestoreOptions
from backup.restore.tables import restore_tables
from backup.storage import Storage

# One md5 per row, sorted as hex digits (no collation involved), then one md5 of them all:
# 32 bytes per row in memory, the same figure on any server for the same rows.
ROWS_MD5 = (
    "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) "
    "FROM (SELECT md5(t::text) AS h FROM {table} t) rows"
)


@dataclass(frozen=True)
class TableCheck:
    name: str
    rows: int
    expected: int | None
    """The manifest's count: exact (``exact``) or an estimate; None when it has none."""
    exact: bool
    md5: str


@dataclass(frozen=True)
class TableTest:
    seconds: float
    tables: list[TableCheck]


def test_restore_tables(
    config: Config,
    scratch_pg: PostgresConfig,
    storages: dict[str, Storage],
    entries: list[Entry],
    names: Sequence[str],
) -> TableTest:
    """Restore the tables ``names`` of the backup of ``entries`` into a new scratch database on
    ``scratch_pg``'s server, count and hash their rows, drop it whatever happens."""
    m = entries[0].manifest
    if m.kind != "database":
        raise ConfigError("--restore-test applies to database backups, not globals")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scratch = pg_server.suffixed(f"pgbackup_verify_{m.database}", f"_{stamp}")
    scratch_config = replace(config, postgres=scratch_pg)
    started = time.monotonic()
    try:
        restore_tables(
            scratch_config,
            storages,
            entries,
            list(names),
            RestoreOptions(target_db=scratch, force=True),
            confirm_fn=lambda lines, force: None,
        )
        seconds = time.monotonic() - started
        found = _measure(scratch_pg, scratch, m.row_counts)
    finally:
        admin_db = pg_server.maintenance_db(scratch_pg, scratch)
        with contextlib.suppress(BackupError), pg_server.connect(scratch_pg, admin_db) as conn:
            if pg_server.database_exists(conn, scratch):
                pg_server.drop_database(conn, scratch)
    wrong = [t for t in found if t.exact and t.expected is not None and t.rows != t.expected]
    if wrong:
        raise IntegrityError(
            "; ".join(
                f"{t.name}: {t.rows} rows restored, the manifest counted {t.expected}"
                for t in wrong
            ),
            hint="the backup does not hold the rows its manifest recorded: use another backup",
        )
    return TableTest(seconds, found)


def _measure(pg: PostgresConfig, database: str, row_counts: dict) -> list[TableCheck]:
    counts = row_counts.get("tables") or {} if isinstance(row_counts, dict) else {}
    exact = isinstance(row_counts, dict) and row_counts.get("mode") == "exact"
    found = []
    with pg_server.connect(pg, database) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            name = f"{quote_ident(schema)}.{quote_ident(table)}"
            rows, md5 = conn.execute(ROWS_MD5.replace("{table}", name)).fetchone()
            expected = counts.get(pg_server.table_key(schema, table))
            known = isinstance(expected, int) and expected >= 0
            found.append(TableCheck(name, rows, expected if known else None, exact, md5))
    return found
