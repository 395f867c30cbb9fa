"""The PostgreSQL server, spoken to in-process (psycopg): the queries the job runs about
databases, tables and their properties, on connections from ``connection.py`` (``connect`` is
re-exported here, where every caller finds it). Database-level statements (create, rename,
drop) quote every name; a name is at most 63 bytes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from backup.config import PostgresConfig
from backup.errors import BackupError, ConfigError, DatabaseError
from backup.postgres.connection import connect as connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    version: str  # e.g. "17.6"
    version_num: int  # e.g. 170006

    @property
    def major(self) -> int:
        return self.version_num // 10000


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
SELECT n.nspname, c.relname, c.reltuples::bigint, c.oid::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def table_key(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def row_counts(
    conn: psycopg.Connection, mode: str, only: Callable[[str], bool] | None = None
) -> dict[str, int]:
    """Rows per user table: ``exact`` counts (in the caller's snapshot), ``estimate`` reads
    planner statistics (-1 where the table was never analysed). With ``only``, the tables
    (``schema.table``) it accepts, the others neither counted nor listed."""
    tables = conn.execute(_COUNTED_TABLES).fetchall()
    if only is not None:
        tables = [row for row in tables if only(table_key(row[0], row[1]))]
    if mode == "estimate":
        return {table_key(s, t): int(n) for s, t, n, _ in tables}
    return {table_key(s, t): count_rows(conn, s, t) for s, t, _, _ in tables}


def user_tables(conn: psycopg.Connection) -> dict[int, str]:
    """``schema.table`` of every table ``row_counts`` counts, by OID."""
    return {int(oid): table_key(s, t) for s, t, _, oid in conn.execute(_COUNTED_TABLES)}


def largest_table_bytes(conn: psycopg.Connection) -> int:
    """The on-disk size of the largest user table (TOAST included): what one file of a
    directory-format dump takes in the spool, roughly (COPY text is often larger)."""
    row = conn.execute(
        "SELECT coalesce(max(pg_table_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchone()
    return int(row[0]) if row else 0


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


MAX_IDENTIFIER_BYTES = 63


def suffixed(name: str, suffix: str) -> str:
    """``name + suffix`` within PostgreSQL's 63-byte identifier limit."""
    room = MAX_IDENTIFIER_BYTES - len(suffix.encode())
    base = name.encode()[:room].decode("utf-8", "ignore")
    return base + suffix


def maintenance_db(pg: PostgresConfig, avoid: str) -> str:
    """A database to connect to while creating, renaming and dropping ``avoid``: ``postgres``,
    else PGDATABASE, else ``template1`` (the first that exists and is not ``avoid``)."""
    candidates = [d for d in dict.fromkeys(("postgres", pg.database, "template1")) if d]
    candidates = [d for d in candidates if d != avoid]
    last: BackupError | None = None
    for database in candidates:
        try:
            with connect(pg, database):
                return database
        except DatabaseError as err:
            if "does not exist" not in err.message:
                raise
            last = err
    assert last is not None
    raise last


def list_tables(conn: psycopg.Connection) -> list[str]:
    """``schema.table`` of every ordinary and partitioned table outside the system schemas."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    return [r[0] for r in rows]


def count_rows(conn: psycopg.Connection, schema: str, table: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(table)
    )
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def check_identifier(name: str, variable: str) -> None:
    if not name or len(name.encode()) > 63:
        raise ConfigError(f"{variable}: {name!r} is not a valid database name (1 to 63 bytes)")


@dataclass(frozen=True)
class Session:
    """A connection to a database, as ``pg_stat_activity`` shows it to the job's role."""

    pid: int
    user: str
    application: str


def database_sessions(conn: psycopg.Connection, name: str) -> list[Session]:
    """Every session connected to ``name`` except the job's own (what a swap terminates)."""
    rows = conn.execute(
        "SELECT pid, coalesce(usename, ''), coalesce(application_name, '') "
        "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY pid",
        (name,),
    ).fetchall()
    return [Session(pid=r[0], user=r[1], application=r[2]) for r in rows]


def reset_database_properties(conn: psycopg.Connection, name: str) -> None:
    """Give ``name`` the properties of a new database: no comment, no settings (its own nor
    per role in it), no connection limit, the default grants. Run in the caller's
    transaction, before the archived properties are applied over an existing database."""
    db = sql.Identifier(name)
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(db))
    conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(db))
    conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT -1").format(db))
    roles = conn.execute(
        "SELECT r.rolname FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = %s",
        (name,),
    ).fetchall()
    for (role,) in roles:
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(sql.Identifier(role), db)
        )
    grantees = conn.execute(
        "SELECT DISTINCT coalesce(r.rolname, 'PUBLIC') FROM pg_database d, "
        "aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
        "WHERE d.datname = %s AND a.grantee <> d.datdba",
        (name,),
    ).fetchall()
    for (grantee,) in grantees:
        who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {} CASCADE").format(db, who))
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(db))


def apply_database_properties(
    conn: psycopg.Connection,
    name: str,
    statements: list[sql.Composed],
    *,
    reset: bool = False,
    commit: bool = True,
) -> None:
    """Run ``statements`` in one transaction, all or none; with ``reset``, first give ``name``
    the properties of a new database (``reset_database_properties``). Without ``commit`` the
    transaction is rolled back: a rehearsal that finds a missing role before anything is
    touched."""
    failed: sql.Composed | None = None
    try:
        with conn.transaction() as tx:
            if reset:
                reset_database_properties(conn, name)
            for statement in statements:
                failed = statement
                conn.execute(statement)
            failed = None
            if not commit:
                raise psycopg.Rollback(tx)
    except psycopg.errors.UndefinedObject as err:
        if "role" not in str(err):
            raise _properties_error(err, failed, conn) from err
        raise DatabaseError(
            f"cannot give the restored database its properties: {str(err).strip()}",
            hint="a role the backup names does not exist on this server: restore the roles "
            "first ('restore --globals') or create it, then run the restore again",
        ) from err
    except psycopg.Error as err:
        raise _properties_error(err, failed, conn) from err


def apply_properties_each(
    conn: psycopg.Connection, statements: list[tuple[str, sql.Composed]]
) -> tuple[list[str], list[str]]:
    """A test restore's properties: each ``(kind, statement)`` in its own savepoint of one
    transaction; one naming a role this server lacks is reported, not fatal (returned, with
    its kind); any other failure raises, all rolled back. Returns the kinds applied and the
    missing-role reports."""
    applied: list[str] = []
    missing: list[str] = []
    with conn.transaction():
        for kind, statement in statements:
            try:
                with conn.transaction():
                    conn.execute(statement)
            except psycopg.errors.UndefinedObject as err:
                if "role" not in str(err):
                    raise _properties_error(err, statement, conn) from err
                missing.append(f"{kind}: {str(err).strip()}")
                continue
            except psycopg.Error as err:
                raise _properties_error(err, statement, conn) from err
            applied.append(kind)
    return applied, missing


_VALUE = re.compile(r"( (?:TO|=|IS) ).*", re.S)


def _properties_error(
    err: psycopg.Error, failed: sql.Composed | None, conn: psycopg.Connection
) -> DatabaseError:
    text = failed.as_string(conn) if failed is not None else ""
    # The statement names what failed; a setting's value or a comment may be private: cut.
    text = _VALUE.sub(r"\1...", text)
    return DatabaseError(
        f"cannot give the restored database its properties: {str(err).strip()}"
        + (f" (statement: {text[:200]})" if text else ""),
        hint="the restoring role must be allowed to run it (a superuser, or the database's "
        "owner for its own settings and grants), and the server must know every setting",
    )


def database_creation(conn: psycopg.Connection, name: str) -> dict[str, str]:
    """How ``name`` was created, in the terms of pg_dump's ``CREATE DATABASE`` options:
    ENCODING, LC_COLLATE, LC_CTYPE, TABLESPACE, and LOCALE_PROVIDER (PostgreSQL 15 and later)."""
    row = conn.execute(
        "SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, t.spcname, "
        "current_setting('server_version_num')::int FROM pg_database d "
        "JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s",
        (name,),
    ).fetchone()
    if row is None:
        return {}
    found = {"ENCODING": row[0], "LC_COLLATE": row[1], "LC_CTYPE": row[2], "TABLESPACE": row[3]}
    if row[4] >= 150000:
        provider = conn.execute(
            "SELECT datlocprovider FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        names = {"c": "libc", "i": "icu", "b": "builtin"}
        if provider:
            found["LOCALE_PROVIDER"] = names.get(provider[0], provider[0])
    return found
