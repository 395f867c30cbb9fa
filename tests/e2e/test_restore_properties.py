"""Restore brings the database back, not only its contents: owner, settings, comment, grants;
it names the sessions a swap ends; and an empty name is a usage error, not "the default"."""

from __future__ import annotations

import io
import subprocess

import psycopg
import pytest

from backup.errors import DatabaseError
from tests.conftest import clean_environ, run_job, unique_name
from tests.fixtures.pgcluster import Cluster, client_bindir


def _bin_dirs() -> str:
    dirs = [client_bindir(17), client_bindir(18)]
    assert all(dirs), "PostgreSQL 17/18 client tools missing: run make test"
    return ":".join(str(d) for d in dirs)


def _env(cluster: Cluster, database: str, backup_dir, tmp_path) -> dict[str, str]:
    return cluster.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_PG_BIN_DIRS=_bin_dirs(),
    )


def _northwind(cluster: Cluster) -> tuple[str, str, str]:
    """A database with an owner, a comment, settings of its own and of a role in it, and
    CONNECT revoked from PUBLIC but granted to a reader. Returns (database, owner, reader)."""
    database = unique_name("North wind")
    owner = unique_name("app_owner")
    reader = unique_name("App Reader")
    with cluster.connect() as conn:
        conn.execute(f'CREATE ROLE "{owner}"')
        conn.execute(f'CREATE ROLE "{reader}" LOGIN')
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        for statement in (
            f"""COMMENT ON DATABASE "{database}" IS 'orders; the ''real'' ones\nsince 1996'""",
            f'ALTER DATABASE "{database}" SET search_path TO app, public',
            f"ALTER DATABASE \"{database}\" SET work_mem TO '8MB'",
            f'ALTER ROLE "{reader}" IN DATABASE "{database}" SET statement_timeout TO \'5s\'',
            f'ALTER DATABASE "{database}" CONNECTION LIMIT 40',
            f'REVOKE CONNECT, TEMPORARY ON DATABASE "{database}" FROM PUBLIC',
            f'GRANT CONNECT ON DATABASE "{database}" TO "{reader}" WITH GRANT OPTION',
            # A grant made by another role than the owner (pg_dump writes it as that role).
            f'CREATE ROLE "{reader}_2"',
            f'SET ROLE "{reader}"',
            f'GRANT CONNECT ON DATABASE "{database}" TO "{reader}_2"',
            "RESET ROLE",
        ):
            conn.execute(statement)
    cluster.execute(
        database, "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)"
    )
    return database, owner, reader


def properties(cluster: Cluster, database: str) -> dict[str, object]:
    """What the catalogs say about the database itself (name-independent)."""
    with cluster.connect() as conn:
        row = conn.execute(
            "SELECT d.oid, pg_get_userbyid(d.datdba), d.datconnlimit, "
            "ARRAY(SELECT a::text FROM unnest(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "ORDER BY 1), shobj_description(d.oid, 'pg_database') "
            "FROM pg_database d WHERE d.datname = %s",
            (database,),
        ).fetchone()
        assert row is not None, f"{database} does not exist"
        settings = conn.execute(
            "SELECT coalesce(r.rolname, '*'), s.setconfig FROM pg_db_role_setting s "
            "LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = %s ORDER BY 1",
            (row[0],),
        ).fetchall()
    return {
        "owner": row[1],
        "connection_limit": row[2],
        "acl": row[3],
        "comment": row[4],
        "settings": [(role, sorted(config)) for role, config in settings],
    }


def _tamper(cluster: Cluster, database: str, reader: str) -> None:
    """What happens to a database between the backup and the restore."""
    with cluster.connect() as conn:
        for statement in (
            f'ALTER DATABASE "{database}" OWNER TO postgres',
            f"COMMENT ON DATABASE \"{database}\" IS 'changed'",
            f'ALTER DATABASE "{database}" RESET ALL',
            f"ALTER DATABASE \"{database}\" SET work_mem TO '64MB'",
            f'ALTER ROLE "{reader}" IN DATABASE "{database}" RESET ALL',
            f'ALTER ROLE postgres IN DATABASE "{database}" SET jit TO off',
            f'ALTER DATABASE "{database}" CONNECTION LIMIT -1',
            f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO PUBLIC',
            f'GRANT CREATE ON DATABASE "{database}" TO "{reader}"',
        ):
            conn.execute(statement)


@pytest.mark.parametrize("major", [15, 17, 18])
def test_database_properties_come_back(major, request, backup_dir, tmp_path):
    cluster: Cluster = request.getfixturevalue(f"pg{major}")
    database, owner, reader = _northwind(cluster)
    env = _env(cluster, database, backup_dir, tmp_path)
    source = properties(cluster, database)
    assert source["owner"] == owner and source["comment"].startswith("orders;")
    assert run_job("backup", env=env).returncode == 0

    # A new database (--target-db).
    copy = unique_name("copy")
    result = run_job("restore", "--target-db", copy, "--force", env=env)
    assert result.returncode == 0, result.output
    assert properties(cluster, copy) == source

    # Over the existing database: fresh copy, then the swap.
    _tamper(cluster, database, reader)
    result = run_job("restore", "--force", "--drop-old", env=env)
    assert result.returncode == 0, result.output
    assert properties(cluster, database) == source

    # In place: the existing database gets the backup's properties back, nothing more.
    _tamper(cluster, database, reader)
    result = run_job("restore", "--force", "--in-place", env=env)
    assert result.returncode == 0, result.output
    assert properties(cluster, database) == source
    assert "database properties of the backup given to" in result.stderr
    assert "created with other settings" not in result.stderr


def test_another_encoding_or_locale_is_said(pg15, backup_dir, tmp_path):
    database = unique_name("latin")
    pg15.execute(
        "postgres",
        f"CREATE DATABASE \"{database}\" TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'",
    )
    pg15.execute(database, "CREATE TABLE t (x text); INSERT INTO t VALUES ('caf\u00e9')")
    env = _env(pg15, database, backup_dir, tmp_path)
    assert run_job("backup", env=env).returncode == 0
    result = run_job("restore", "--target-db", unique_name("copy"), "--force", env=env)
    assert result.returncode == 0, result.output
    assert "created with other settings" in result.stderr
    assert "ENCODING 'LATIN1' (restored: 'UTF8')" in result.stderr
    assert "LC_COLLATE 'C' (restored: 'C.UTF-8')" in result.stderr


def test_a_missing_role_stops_the_restore_before_anything_changes(pg15, backup_dir, tmp_path):
    database, _owner, _reader = _northwind(pg15)
    ghost = unique_name("ghost")
    pg15.execute("postgres", f'CREATE ROLE "{ghost}"')
    pg15.execute(
        "postgres", f'ALTER ROLE "{ghost}" IN DATABASE "{database}" SET work_mem TO \'1MB\''
    )
    env = _env(pg15, database, backup_dir, tmp_path)
    assert run_job("backup", env=env).returncode == 0
    pg15.execute("postgres", f'DROP ROLE "{ghost}"')
    pg15.execute(database, "INSERT INTO orders VALUES (2)")
    before = pg15.databases()

    for extra in ([], ["--in-place"]):
        result = run_job("restore", "--force", *extra, env=env)
        assert result.returncode == 3, result.output
        assert ghost in result.stderr and "restore --globals" in result.stderr
        assert "Traceback" not in result.output
        assert pg15.databases() == before
        with pg15.connect(database) as conn:  # the data was never touched
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 2
        assert "--no-database-properties" in result.stderr

    # The operator's explicit choice: restore without them, each one listed in the log.
    result = run_job("restore", "--force", "--drop-old", "--no-database-properties", env=env)
    assert result.returncode == 0, result.output
    assert f'not applied: ALTER ROLE {ghost} IN DATABASE "{database}" SET' in result.stderr
    assert properties(pg15, database)["comment"] is None


def test_restore_names_the_sessions_the_swap_ends(pg15, sample_db, job_env):
    assert run_job("backup", env=job_env).returncode == 0
    sessions = [
        pg15.connect(sample_db),
        psycopg.connect(pg15.url(sample_db), application_name="crm-app", autocommit=True),
        psycopg.connect(pg15.url(sample_db), application_name="crm-app", autocommit=True),
    ]
    try:
        dry = run_job("restore", "--dry-run", env=job_env)
        assert dry.returncode == 0, dry.output
        assert f"Sessions: 3 connected to {sample_db} will be TERMINATED at the swap" in dry.stdout
        assert "users: postgres (3)" in dry.stdout
        assert "crm-app (2)" in dry.stdout
        in_place = run_job("restore", "--dry-run", "--in-place", env=job_env)
        assert "3 connected" in in_place.stdout and "does not end them" in in_place.stdout

        result = run_job("restore", "--force", "--drop-old", env=job_env)
        assert result.returncode == 0, result.output
        assert "3 connected" in result.stderr and "TERMINATED" in result.stderr
        with pytest.raises(psycopg.OperationalError):
            sessions[1].execute("SELECT 1")
    finally:
        for conn in sessions:
            conn.close()
    quiet = run_job("restore", "--dry-run", env=job_env)
    assert f"Sessions: none connected to {sample_db}" in quiet.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--target-db", ""],
        ["--target-db", "  "],
        ["--database", ""],
        [""],
        ["latest", "--destination", ""],
    ],
)
def test_an_empty_name_is_a_usage_error(pg15, sample_db, job_env, args):
    assert run_job("backup", env=job_env).returncode == 0
    before = pg15.databases()
    result = run_job("restore", *args, "--force", env=job_env)
    assert result.returncode == 2, result.output
    assert "cannot be empty or blank" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.output
    assert pg15.databases() == before


def test_a_table_of_contents_larger_than_the_head_is_read_again(pg15):
    """Past HEAD_LIMIT_BYTES the archive is read a second time (to its end, so its checksum is
    checked again) and the properties still come back."""
    from backup.postgres import pg_restore
    from backup.postgres.tools import Tools

    database, owner, reader = _northwind(pg15)
    bindir = client_bindir(15)
    archive = subprocess.run(
        [str(bindir / "pg_dump"), "-Fc", "-Z0"],
        env={**clean_environ(), **pg15.env(database)},
        capture_output=True,
        check=True,
    ).stdout
    tools = Tools(bindir=bindir, major=15, version="15")

    def head() -> pg_restore.HeadRecorder:
        recorder = pg_restore.HeadRecorder(io.BytesIO(archive), limit_bytes=600)
        while recorder.read(1 << 16):
            pass
        return recorder

    with head() as first, pytest.raises(DatabaseError):
        pg_restore.read_database_properties(tools, first)

    drained: list[bool] = []

    class Stored:
        def __init__(self, stream: io.BytesIO) -> None:
            self.stream = stream

        def drain(self) -> None:
            assert self.stream.read() == b""
            drained.append(True)

    def reopen() -> tuple[Stored, io.BytesIO]:
        stream = io.BytesIO(archive)
        return Stored(stream), stream

    with head() as second:
        props = pg_restore.read_database_properties(tools, second, reopen)
    assert drained == [True]
    applied = [s.as_string(None) for s in props.for_database("x")]
    assert f'ALTER DATABASE "x" OWNER TO {owner}' in applied
    assert f'GRANT CONNECT ON DATABASE "x" TO "{reader}" WITH GRANT OPTION' in applied
    assert f'SET SESSION AUTHORIZATION "{reader}"' in applied
    assert props.skipped == []


def _dumpall(cluster: Cluster) -> list[str]:
    """``pg_dumpall`` of the cluster, filtered as pg_upgrade's own test filters its dumps
    (src/bin/pg_upgrade/t/002_pg_upgrade.pl: comments, blank lines, \\restrict keys)."""
    out = subprocess.run(
        [str(cluster.bindir / "pg_dumpall"), "--no-password"],
        env={**clean_environ(), **cluster.env("postgres")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]


def test_a_cluster_restored_from_all_dumps_like_the_source(backup_dir, tmp_path):
    """Globals first, then every database, into a fresh cluster: pg_dumpall sees no difference."""
    source = Cluster(client_bindir(15)).start()
    target = Cluster(client_bindir(15)).start()
    try:
        database, _owner, reader = _northwind(source)
        source.create_database("crm")
        source.load_sample("crm")
        source.execute("postgres", "COMMENT ON DATABASE postgres IS 'the maintenance one'")
        source.execute("postgres", "ALTER DATABASE postgres SET work_mem TO '5MB'")
        source.execute("postgres", f'GRANT CREATE ON DATABASE postgres TO "{reader}"')
        env = {**_env(source, "postgres", backup_dir, tmp_path), "BACKUP_DATABASES": "all"}
        assert run_job("backup", env=env).returncode == 0

        restore_env = {**env, "PGPORT": str(target.port)}
        result = run_job("restore", "--globals", "--force", env=restore_env)
        assert result.returncode == 0, result.output
        for name in ("postgres", "crm", database):
            result = run_job(
                "restore", "--database", name, "--force", "--drop-old", env=restore_env
            )
            assert result.returncode == 0, result.output
        assert _dumpall(target) == _dumpall(source)
    finally:
        source.stop()
        target.stop()
