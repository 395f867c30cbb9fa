"""PostgreSQL: client tool selection, version checks, connections and database-level SQL.

pg_dump / pg_restore / psql are chosen to match the server's major version when several are
installed (``/usr/lib/postgresql/<major>/bin``, then ``BACKUP_PG_BIN_DIRS``, then ``PATH``);
otherwise the newest. A pg_dump older than the server is refused: that is the usual way backups
silently stop after a server upgrade. Passwords go to children through their environment and to
psycopg as a keyword, never through argv.
"""

from __future__ import annotations

import glob
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from backup.config import PostgresConfig
from backup.errors import ConfigError, DatabaseError

log = logging.getLogger(__name__)

SYSTEM_BIN_GLOB = "/usr/lib/postgresql/*/bin"
CONNECT_TIMEOUT_S = 10
# libpq environment variable -> connection keyword, for the in-process connections.
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
    "PGSERVICEFILE": "servicefile",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
}


@dataclass(frozen=True)
class Tools:
    """One installation of the client tools, all of the same major version."""

    bindir: Path
    major: int
    version: str  # e.g. "15.18"

    def path(self, tool: str) -> str:
        return str(self.bindir / tool)


@dataclass(frozen=True)
class ServerInfo:
    version: str  # e.g. "17.6"
    version_num: int  # e.g. 170006

    @property
    def major(self) -> int:
        return self.version_num // 10000


def _tool_version(pg_dump: Path) -> tuple[int, str] | None:
    try:
        out = subprocess.run(
            [str(pg_dump), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        return None
    return int(match[1]), match[0]


def installed_tools(extra_dirs: Sequence[str] = ()) -> list[Tools]:
    """Every client installation found, newest major first (one per major)."""
    candidates = [Path(d) for d in extra_dirs]
    candidates += [Path(d) for d in sorted(glob.glob(SYSTEM_BIN_GLOB))]
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    found: dict[int, Tools] = {}
    for bindir in candidates:
        pg_dump = bindir / "pg_dump"
        if not pg_dump.exists():
            continue
        version = _tool_version(pg_dump)
        if version and version[0] not in found:
            found[version[0]] = Tools(bindir=bindir, major=version[0], version=version[1])
    return sorted(found.values(), key=lambda t: t.major, reverse=True)


def choose_tools(server: ServerInfo, extra_dirs: Sequence[str] = ()) -> Tools:
    """The tools of the server's major if installed, else the newest; refuse older ones."""
    tools = installed_tools(extra_dirs)
    if not tools:
        raise DatabaseError(
            "pg_dump is not installed",
            hint="install the PostgreSQL client tools (the container image ships 14 to 18)",
        )
    for candidate in tools:
        if candidate.major == server.major:
            return candidate
    newest = tools[0]
    if newest.major < server.major:
        raise DatabaseError(
            f"pg_dump {newest.version} is older than the server ({server.version}): "
            "it cannot dump it",
            hint=f"install the PostgreSQL {server.major} client tools "
            f"(postgresql-client-{server.major}) or use an image that has them; "
            f"found pg_dump {', '.join(t.version for t in tools)}",
        )
    return newest


def choose_restore_tools(
    server: ServerInfo, dump_version: str, extra_dirs: Sequence[str] = ()
) -> Tools:
    """pg_restore able to read an archive made by pg_dump ``dump_version``: the server's major
    when that is new enough, else the oldest major that is (closest to the server's SQL)."""
    tools = installed_tools(extra_dirs)
    if not tools:
        raise DatabaseError(
            "pg_restore is not installed", hint="install the PostgreSQL client tools"
        )
    dump_major = major_of(dump_version) or 0
    able = [t for t in tools if t.major >= dump_major]
    if not able:
        raise DatabaseError(
            f"this backup was made by pg_dump {dump_version}; the newest pg_restore here is "
            f"{tools[0].version} and cannot read it",
            hint=f"install the PostgreSQL {dump_major} client tools "
            f"(postgresql-client-{dump_major})",
        )
    for candidate in able:
        if candidate.major == server.major:
            return candidate
    return min(able, key=lambda t: t.major)


def major_of(version: str) -> int | None:
    """12 of '12.4', 17 of '17.10 (Debian ...)'; None when unreadable."""
    match = re.match(r"(\d+)", version or "")
    return int(match[1]) if match else None


def connect_kwargs(pg: PostgresConfig, database: str | None = None) -> dict[str, str]:
    env = pg.libpq_env(database)
    kwargs = {_ENV_TO_KEYWORD[k]: v for k, v in env.items() if k in _ENV_TO_KEYWORD}
    kwargs.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    kwargs.setdefault("application_name", "pgbackup-job")
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
    pg: PostgresConfig, database: str | None = None, autocommit: bool = True
) -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(**connect_kwargs(pg, database), autocommit=autocommit)
    except psycopg.Error as err:
        message = describe_connection_error(err, pg, database)
        raise DatabaseError(message, hint=connection_hint(message)) from err
    try:
        yield conn
    except psycopg.Error as err:
        raise DatabaseError(f"{pg.display_host}: {str(err).strip()}") from err
    finally:
        conn.close()


def server_info(conn: psycopg.Connection) -> ServerInfo:
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
    ).fetchone()
    assert row is not None
    return ServerInfo(version=row[0].split()[0], version_num=row[1])


def list_databases(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
    ).fetchall()
    return [r[0] for r in rows]


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    )


def is_superuser(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


_COUNTED_TABLES = """
SELECT n.nspname, c.relname, c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def table_key(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def row_counts(conn: psycopg.Connection, mode: str) -> dict[str, int]:
    """Rows per user table: ``exact`` counts (in the caller's snapshot), ``estimate`` reads
    planner statistics (-1 where the table was never analysed)."""
    tables = conn.execute(_COUNTED_TABLES).fetchall()
    if mode == "estimate":
        return {table_key(s, t): int(n) for s, t, n in tables}
    counts = {}
    for schema, table, _ in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[table_key(schema, table)] = int(row[0]) if row else 0
    return counts


def create_database(conn: psycopg.Connection, name: str, owner: str | None = None) -> None:
    query = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if owner:
        query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
    conn.execute(query)


def database_owner(conn: psycopg.Connection, name: str) -> str | None:
    row = conn.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)
    ).fetchone()
    return row[0] if row else None


def terminate_connections(conn: psycopg.Connection, name: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )


def drop_database(conn: psycopg.Connection, name: str) -> None:
    terminate_connections(conn, name)
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def rename_database(conn: psycopg.Connection, old: str, new: str) -> None:
    terminate_connections(conn, old)
    conn.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    )


def check_identifier(name: str, variable: str) -> None:
    if not name or len(name.encode()) > 63:
        raise ConfigError(f"{variable}: {name!r} is not a valid database name (1 to 63 bytes)")
