"""Version safety with real servers of three majors: Debian's 15, and 17 and 18 from PyPI."""

from __future__ import annotations

import json

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests, visible_files
from tests.fixtures.compare import fingerprint_db
from tests.fixtures.pgcluster import client_bindir


def _dirs() -> str:
    """BACKUP_PG_BIN_DIRS with the 17 and 18 client tools (15 is found in /usr/lib)."""
    dirs = [client_bindir(17), client_bindir(18)]
    assert all(dirs), "PostgreSQL 17/18 client tools missing: run make test"
    return ":".join(str(d) for d in dirs)


def _env(cluster, database, backup_dir, tmp_path, **extra):
    return cluster.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        **extra,
    )


def _fill(cluster) -> str:
    name = unique_name("shop")
    return cluster.create_sample_database(name)


def test_pg_dump_older_than_the_server_is_refused(pg17, backup_dir, tmp_path):
    database = _fill(pg17)
    # Only Debian's pg_dump 15 is visible: it must refuse a 17 server, naming both versions.
    result = run_job("backup", env=_env(pg17, database, backup_dir, tmp_path))
    assert result.returncode == 3, result.output
    assert "15." in result.stderr and "17." in result.stderr
    assert "postgresql-client-17" in result.stderr
    assert visible_files(backup_dir) == []
    check = run_job("check", env=_env(pg17, database, backup_dir, tmp_path))
    assert check.returncode == 3 and "17." in check.stderr


def test_the_servers_major_is_chosen_among_several(pg15, pg17, pg18, backup_dir, tmp_path):
    for cluster, major in ((pg15, "15"), (pg17, "17"), (pg18, "18")):
        database = _fill(cluster)
        env = _env(cluster, database, backup_dir, tmp_path, BACKUP_PG_BIN_DIRS=_dirs())
        result = run_job("backup", env=env)
        assert result.returncode == 0, result.output
        record = next(m for m in manifests(backup_dir) if m["database"] == database)
        assert record["pg_dump_version"].startswith(major + ".")
        assert record["server_version"].startswith(major + ".")
        target = unique_name("restored")
        restored = run_job(
            "restore", "--database", database, "--target-db", target, "--force", env=env
        )
        assert restored.returncode == 0, restored.output
        assert fingerprint_db(cluster, target) == fingerprint_db(cluster, database)


def test_restore_into_a_newer_server(pg15, pg17, backup_dir, tmp_path):
    database = _fill(pg15)
    env15 = _env(pg15, database, backup_dir, tmp_path)
    assert run_job("backup", env=env15).returncode == 0
    env17 = _env(pg17, database, backup_dir, tmp_path, BACKUP_PG_BIN_DIRS=_dirs())
    pg17.create_sample_roles()  # not left to another test having loaded the sample there
    target = unique_name("upgraded")
    result = run_job("restore", "--target-db", target, "--force", env=env17)
    assert result.returncode == 0, result.output
    restored, original = fingerprint_db(pg17, target), fingerprint_db(pg15, database)
    # A newer server deparses view definitions differently; everything else is equal.
    restored.pop("views"), original.pop("views")
    assert restored == original


def test_restore_into_an_older_server_warns_first(pg15, pg17, backup_dir, tmp_path):
    database = unique_name("plain")
    pg17.create_database(database)
    pg17.execute(
        database,
        "CREATE TABLE t (id int PRIMARY KEY, v text); "
        "INSERT INTO t SELECT g, g::text FROM generate_series(1, 100) g",
    )
    env17 = _env(pg17, database, backup_dir, tmp_path, BACKUP_PG_BIN_DIRS=_dirs())
    assert run_job("backup", env=env17).returncode == 0
    env15 = _env(pg15, database, backup_dir, tmp_path, BACKUP_PG_BIN_DIRS=_dirs())
    target = unique_name("downgraded")
    result = run_job("restore", "--target-db", target, "--force", env=env15)
    assert "older major" in result.stderr
    # pg_restore 15 cannot read a 17 archive, so the 17 tools are used; they emit
    # `SET transaction_timeout`, which 15 does not know: a clear error, nothing left behind.
    assert result.returncode == 3, result.output
    assert "restore into a server of major 17 or newer" in result.stderr
    assert target not in pg15.databases()
    # Without the newer tools, pg_restore 15 cannot read the archive: a clear error.
    no_tools = run_job(
        "restore",
        "--target-db",
        target + "x",
        "--force",
        env=_env(pg15, database, backup_dir, tmp_path),
    )
    assert no_tools.returncode == 3, no_tools.output
    assert "cannot read it" in no_tools.stderr
    listing = run_job("list", "--json", env=env15)
    assert json.loads(listing.stdout)[0]["server_version"].startswith("17.")
