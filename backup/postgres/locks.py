"""Locks on the server: the job's session-level advisory lock (``lock.py``) and the table locks
a dump waits for (``lockwatch.py``), each with the session on the other side of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from backup.errors import DatabaseError

log = logging.getLogger(__name__)


def try_advisory_lock(conn: psycopg.Connection, key: int) -> bool:
    """Take the session-level advisory lock ``key`` without waiting; False if another session
    holds it. The server releases it when this session ends, however the job ends."""
    try:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    except psycopg.Error as err:
        raise DatabaseError(f"advisory lock: {str(err).strip()}") from err
    return bool(row and row[0])


def advisory_lock_holder(conn: psycopg.Connection, key: int) -> str | None:
    """Who holds the advisory lock ``key`` in this database: application, client, since when."""
    try:
        return _advisory_lock_holder(conn, key)
    except psycopg.Error as err:
        log.debug("cannot tell who holds the advisory lock: %s", err)
        return None


def _advisory_lock_holder(conn: psycopg.Connection, key: int) -> str | None:
    row = conn.execute(
        "SELECT a.pid, a.application_name, coalesce(a.client_hostname, host(a.client_addr)),"
        " a.backend_start"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        " AND l.classid = %s AND l.objid = %s"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    if row is None:
        return None
    pid, application, client, since = row
    return (
        f"session {pid} ({application or 'no application name'}, "
        f"from {client or 'a local socket'}, connected {since:%Y-%m-%d %H:%M:%S %Z})"
    )


@dataclass(frozen=True)
class LockWait:
    """A backend waiting for a table lock, and the session that holds it."""

    table: str
    mode: str
    waited_s: float
    blocker_pid: int
    blocker_user: str | None
    blocker_application: str | None
    blocker_state: str | None
    blocker_backend: str | None = None
    """``pg_stat_activity.backend_type``: ``startup`` is a standby's WAL replay."""


def lock_waits(conn: psycopg.Connection, application_name: str) -> list[LockWait]:
    """What the backends named ``application_name`` wait for: each relation lock not granted,
    with each session blocking it (``pg_blocking_pids``)."""
    rows = conn.execute(
        """
        SELECT coalesce(n.nspname || '.' || c.relname, l.relation::text), l.mode,
               extract(epoch FROM now() - w.query_start),
               b.pid, b.usename, b.application_name, b.state, b.backend_type
        FROM pg_stat_activity w
        JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted AND l.locktype = 'relation'
        LEFT JOIN pg_class c ON c.oid = l.relation
        LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking(pid) ON true
        JOIN pg_stat_activity b ON b.pid = blocking.pid
        WHERE w.application_name = %s
        ORDER BY 1, 4
        """,
        (application_name,),
    ).fetchall()
    return [LockWait(r[0], r[1], float(r[2] or 0.0), *r[3:]) for r in rows]
