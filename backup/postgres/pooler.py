"""Connection poolers between the job and PostgreSQL: a pooler that hands one client's
transactions to different server sessions (PgBouncer's ``transaction`` and ``statement`` modes,
and poolers like it) is refused, before anything runs, with exit 2.

Through such a pooler the job would be wrong in silence: the advisory lock that keeps one run
per job stays on a server session other clients then use (and a second run may take it on
another); pg_dump's session settings (``extra_float_digits``, ``search_path``...) go to one
server session and its dump transaction to another; the job's own ``SET``\\s are lost.

How it is told, on connections the job opens anyway plus one more:

1. A pooler answers the client with a cancel key of its own: ``pg_backend_pid()`` differs from
   the process id the connection was given. Equal: no pooler (a TCP proxy passes the key
   through, and keeps the session). No further probe then.
2. With a pooler, two client connections are watched across transactions: if one server
   session serves both, or one client's transactions land on two server sessions, the pool is
   per transaction. A pooler that refuses a transaction block is in statement mode.

A session-mode pool keeps one server session per client for its whole life: it passes, and
the job says it goes through a pooler. The probe is a few round trips; its result is kept for
the process (the lock and the server inspection connect to the same place).
"""

from __future__ import annotations

import logging

import psycopg

from backup.config import PostgresConfig
from backup.errors import ConfigError, DatabaseError
from backup.postgres import server

log = logging.getLogger(__name__)

PROBE_ROUNDS = 3
_checked: dict[tuple[str, str | None, str], str] = {}

HINT = (
    "point PGHOST/PGPORT (or DATABASE_URL) at the PostgreSQL server itself, or at a pool in "
    "session mode (PgBouncer: pool_mode = session for the job's database or user); the job "
    "holds its sessions for the whole run, a pool per transaction shares them"
)


def require_sessions(pg: PostgresConfig, database: str, conn: psycopg.Connection) -> str:
    """``direct``, or ``session pooler``; ``ConfigError`` when ``conn`` goes through a pooler
    that does not keep one server session per client session."""
    place = (pg.display_host, pg.user, database)
    if place not in _checked:
        _checked[place] = _probe(pg, database, conn)
        if _checked[place] == "session pooler":
            log.info(
                "%s is a connection pooler in session mode (each client session keeps its "
                "server session): fine for the job",
                pg.display_host,
            )
    return _checked[place]


def _pid(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _probe(pg: PostgresConfig, database: str, conn: psycopg.Connection) -> str:
    if _pid(conn) == conn.info.backend_pid:
        return "direct"
    try:
        with server.connect(pg, database, application_name="pgbackup-job pooler probe") as other:
            shared = _shares_sessions(conn, other)
    except DatabaseError as err:
        if "pooling mode" not in err.message:
            raise
        shared = f"it refused a transaction block: {err.message}"
    if shared:
        raise ConfigError(
            f"PGHOST/PGPORT: {pg.display_host} is a connection pooler that shares server "
            f"sessions between transactions ({shared}); the job's lock and pg_dump need one "
            "session each for the whole run",
            hint=HINT,
        )
    return "session pooler"


def _shares_sessions(first: psycopg.Connection, second: psycopg.Connection) -> str | None:
    """What shows that server sessions move between client sessions, or None. ``second``
    holds a transaction open while ``first`` runs a statement, so both cannot be on one
    server session unless the pool moves sessions between clients."""
    for _ in range(PROBE_ROUNDS):
        before = _pid(first)
        with second.transaction():
            held = _pid(second)
            if held == before:
                return f"server session {held} served two client sessions"
            during = _pid(first)
        after = _pid(second)
        if during != before:
            return f"one client session ran on server sessions {before} and {during}"
        if after != held:
            return f"one client session ran on server sessions {held} and {after}"
    return None
