"""Connections to the PostgreSQL server, in-process (psycopg).

Connection errors become ``DatabaseError`` with a hint naming the variable to check; the password
goes to psycopg as a keyword, never in a connection string that could be logged. Every
connection turns off the role's and database's statement and idle timeouts for its own session
(``clear_session_timeouts``), as pg_dump does for its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from backup.config import PostgresConfig
from backup.errors import DatabaseError

CONNECT_TIMEOUT_S = 10
# libpq environment variable -> connection keyword, for the in-process connections.
# PGSERVICEFILE is not one: libpq before 18 has no such keyword (psycopg's refuses it), so the
# in-process libpq reads it from the job's environment, as the children's libpq reads it from
# theirs (PostgresConfig.libpq_env passes it on).
_ENV_TO_KEYWORD = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGDATABASE": "dbname",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
    "PGSSLCERT": "sslcert",
    "PGSSLKEY": "sslkey",
    "PGCONNECT_TIMEOUT": "connect_timeout",
    "PGOPTIONS": "options",
    "PGAPPNAME": "application_name",
    "PGPASSFILE": "passfile",
    "PGSERVICE": "service",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
}


# The lock session idles for the whole run. A load balancer or NAT between the job and the
# server drops a flow idle for minutes (Azure's default: 4 min; AWS NLB: 350 s), silently: the
# server then keeps the dead session, and the job's advisory lock with it, until its own
# keepalive notices (2 h by default), and the next runs are skipped (exit 7). Probes every
# minute keep the flow alive, and a dead peer is noticed in two.
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "60",
    "keepalives_interval": "10",
    "keepalives_count": "6",
}


def connect_kwargs(pg: PostgresConfig, database: str | None = None) -> dict[str, str]:
    """psycopg's keywords for ``database``: the libpq variables of ``pg``, then the job's
    defaults (connect timeout, application name, TCP keepalives)."""
    env = pg.libpq_env(database)
    kwargs = {_ENV_TO_KEYWORD[k]: v for k, v in env.items() if k in _ENV_TO_KEYWORD}
    kwargs.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    kwargs.setdefault("application_name", "pgbackup-job")
    for name, value in KEEPALIVES.items():
        kwargs.setdefault(name, value)
    return kwargs


def describe_connection_error(err: Exception, pg: PostgresConfig, database: str | None) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot connect to {pg.display_host} database {database or pg.database!r}: {text}"


def connection_hint(message: str) -> str:
    lowered = message.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return "check PGUSER and PGPASSWORD (or PGPASSWORD_FILE / DATABASE_URL)"
    if "does not exist" in lowered and "database" in lowered:
        return "check PGDATABASE / BACKUP_DATABASES: that database does not exist on the server"
    if "connection refused" in lowered or "could not translate host" in lowered:
        return "check PGHOST and PGPORT, and that the server accepts connections from here"
    if "timeout" in lowered:
        return "the server did not answer in time: check PGHOST, PGPORT and the network"
    return "check PGHOST, PGPORT, PGUSER, PGPASSWORD and that the server is reachable"


@contextmanager
def connect(
    pg: PostgresConfig,
    database: str | None = None,
    autocommit: bool = True,
    application_name: str | None = None,
) -> Iterator[psycopg.Connection]:
    """A connection to ``database``; ``application_name`` names it in ``pg_stat_activity``
    (the job's lock session and lock watcher are found by theirs)."""
    kwargs = connect_kwargs(pg, database)
    if application_name:
        kwargs["application_name"] = application_name[:63]
    try:
        conn = psycopg.connect(**kwargs, autocommit=autocommit)
    except psycopg.Error as err:
        message = describe_connection_error(err, pg, database)
        raise DatabaseError(message, hint=connection_hint(message)) from err
    try:
        clear_session_timeouts(conn)
        yield conn
    except psycopg.Error as err:
        raise DatabaseError(f"{pg.display_host}: {str(err).strip()}") from err
    finally:
        conn.close()


# Timeouts a role or database may set that would end the job's own sessions halfway through a
# long dump: the lock session idles for the whole run, the exact counts' snapshot idles in its
# transaction while pg_dump works, a count(*) of a big table runs long. pg_dump turns the same
# ones off for its own session; the run's bounds are BACKUP_TIMEOUT and BACKUP_LOCK_WAIT_TIMEOUT.
# lock_timeout is left as set: a restore's DROP or RENAME then still gives up as the DBA chose.
SESSION_TIMEOUTS = (
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",  # PostgreSQL 14
    "transaction_timeout",  # PostgreSQL 17
)


def clear_session_timeouts(conn: psycopg.Connection) -> None:
    """Turn off, for this session only, each of ``SESSION_TIMEOUTS`` the server has and that is
    set (one round trip when none is; the usual case)."""
    rows = conn.execute(
        "SELECT name FROM pg_settings WHERE name = ANY(%s) AND setting <> '0'",
        (list(SESSION_TIMEOUTS),),
    ).fetchall()
    for (name,) in rows:
        conn.execute("SELECT set_config(%s, '0', false)", (name,))
    if not conn.autocommit:
        conn.commit()  # the caller begins its own transaction (set_config outlives this one)
