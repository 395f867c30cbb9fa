"""What a database dump holds, for its manifest: the server's tables before the dump, the
archive's own table of contents after it (its first bytes, kept by the dump), and from both the
row counts a test restore expects and what BACKUP_PG_DUMP_ARGS and BACKUP_EXCLUDE_TABLE_DATA left
out. Tables are matched by OID, so names with spaces or quotes never confuse the two.

``open_snapshot`` (exact counts: the snapshot pg_dump imports), ``server_tables``,
``read_contents``, ``describe`` and ``log_excluded`` are called by ``backup.dump`` in that order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import IO

import psycopg

from backup.config import Config
from backup.errors import DatabaseError
from backup.postgres import server
from backup.postgres.pg_restore import ArchiveTables, read_archive_tables
from backup.postgres.tools import Tools

log = logging.getLogger(__name__)


def open_snapshot(
    config: Config, stack: contextlib.ExitStack, database: str
) -> tuple[psycopg.Connection | None, str | None]:
    """The dump's own session, kept open (by ``stack``) until its row counts are taken after
    the dump; for exact row counts one REPEATABLE READ transaction whose snapshot pg_dump
    imports (its id returned too), so counts and dump see the same data."""
    if config.row_counts != "exact":
        # No snapshot; still one session for the tables before the dump and the estimates
        # after it, held by ``stack`` (not one connection each: hundreds of small databases).
        return stack.enter_context(server.connect(config.postgres, database)), None
    conn = stack.enter_context(server.connect(config.postgres, database, autocommit=False))
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    stack.callback(conn.rollback)
    return conn, row[0] if row else None


def read_contents(tools: Tools, head: IO[bytes], label: str) -> ArchiveTables | None:
    """The tables the archive holds, from its own table of contents (the first bytes pg_dump
    wrote); None, with a warning, when it cannot be read (a TOC larger than the head kept)."""
    return _or_warning(lambda: read_archive_tables(tools, head), label)


def read_folder_contents(tools: Tools, folder: str, label: str) -> ArchiveTables | None:
    """``read_contents`` of a directory-format dump in ``folder`` (its toc.dat)."""
    from backup.postgres.pg_restore_dir import folder_tables

    return _or_warning(lambda: folder_tables(tools, folder), label)


def _or_warning(read: Callable[[], ArchiveTables], label: str) -> ArchiveTables | None:
    try:
        return read()
    except DatabaseError as err:
        log.warning(
            "the table of contents of the dump of %s could not be read: %s",
            label,
            err.message,
            extra={"stage": "dump", "database": label},
        )
        return None


def largest_table_bytes(config: Config, database: str) -> int:
    with server.connect(config.postgres, database) as conn:
        return server.largest_table_bytes(conn)


def server_tables(
    config: Config, database: str, snapshot_conn: psycopg.Connection | None
) -> dict[int, str]:
    """The server's user tables by OID, before the dump (in its snapshot for exact counts)."""
    if snapshot_conn is not None:
        return server.user_tables(snapshot_conn)
    with server.connect(config.postgres, database) as conn:
        return server.user_tables(conn)


def describe(
    config: Config,
    database: str,
    catalog: dict[int, str],
    snapshot_conn: psycopg.Connection | None,
    contents: ArchiveTables | None,
) -> tuple[dict[str, object], dict[str, object]]:
    """``(row_counts, excluded)`` for the manifest, both describing the archive as pg_dump wrote
    it (its own table of contents, matched to the server's tables by OID), never the catalog's
    guess of it: whatever BACKUP_PG_DUMP_ARGS and BACKUP_EXCLUDE_TABLE_DATA selected, by
    pg_dump's own pattern rules.

    ``row_counts``: ``tables``, the rows of each table whose data the archive holds (exact
    counts in the dump's snapshot, or planner estimates), and ``without_data``, the tables it
    creates without their rows; the test restore expects both. ``excluded``: the patterns, the
    tables whose rows were left out, and the server's tables the archive does not create."""
    excluded: dict[str, object] = {}
    if config.dump.exclude_table_data:
        excluded["table_data_patterns"] = list(config.dump.exclude_table_data)
    if contents is None:
        if config.dump.pg_dump_options():
            # What the options selected is unknown: nothing is expected rather than a guess.
            log.warning("no row counts recorded: the archive's tables are unknown")
            return {}, excluded
        # Without options pg_dump dumps every table the catalog query lists.
        contents = ArchiveTables(frozenset(catalog), frozenset(catalog))
    # Only the catalog's tables (ordinary, not an extension's): a partitioned table has a
    # TABLE entry and no rows of its own.
    created = {catalog[oid] for oid in contents.tables if oid in catalog}
    with_data = {catalog[oid] for oid in contents.with_data if oid in catalog}
    without_data = sorted(created - with_data)
    left_out = sorted(set(catalog.values()) - created)
    if without_data:
        excluded["table_data"] = without_data
    if left_out:
        excluded["tables"] = left_out
    mode = config.row_counts
    if mode == "off":
        return {}, excluded
    if snapshot_conn is not None:  # exact: in the dump's snapshot (``open_snapshot``)
        counts = server.row_counts(snapshot_conn, mode, only=with_data.__contains__)
    else:
        with server.connect(config.postgres, database) as conn:
            counts = server.row_counts(conn, "estimate", only=with_data.__contains__)
    recorded: dict[str, object] = {"mode": mode, "tables": counts}
    if without_data:
        recorded["without_data"] = without_data
    return recorded, excluded


def log_excluded(label: str, excluded: dict[str, object]) -> None:
    """One line naming what the dump of ``label`` left out, when it left out anything."""
    parts = []
    for field, what in (("table_data", "the rows of"), ("tables", "the tables")):
        names = excluded.get(field)
        if isinstance(names, list) and names:
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            parts.append(f"{what} {', '.join(names[:10])}{more}")
    if parts:
        log.info(
            "dump of %s leaves out %s",
            label,
            "; ".join(parts),
            extra={"stage": "dump", "database": label},
        )
