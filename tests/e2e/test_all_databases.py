"""BACKUP_DATABASES=all and lists, globals (roles), test restores and exact row counts."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests
from tests.fixtures.pgcluster import Cluster, find_bindir


@pytest.fixture(scope="module")
def cluster():
    """A cluster of its own: 'all' means every database on it."""
    own = Cluster(find_bindir(15)).start()
    own.create_database("shop")
    own.load_sample("shop")
    own.create_database("crm")
    own.execute(
        "crm",
        "CREATE TABLE contacts (id int PRIMARY KEY, name text); "
        "INSERT INTO contacts SELECT g, 'c' || g FROM generate_series(1, 500) g",
    )
    own.create_database("odd name=é")
    own.execute("odd name=é", "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
    own.execute("postgres", "CREATE ROLE app_owner LOGIN PASSWORD 'app-Pass-42' CREATEDB")
    yield own
    own.stop()


def _env(cluster, backup_dir, tmp_path, **extra):
    return cluster.env(
        "postgres",
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        **extra,
    )


def test_all_databases_and_globals(cluster, backup_dir, tmp_path):
    env = _env(cluster, backup_dir, tmp_path, BACKUP_DATABASES="all")
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    records = manifests(backup_dir)
    databases = sorted(m["database"] for m in records if m["kind"] == "database")
    assert databases == sorted(["crm", "odd name=é", "postgres", "shop"])
    [globals_record] = [m for m in records if m["kind"] == "globals"]
    assert globals_record["object_key"].startswith("_globals/globals-")
    # The odd name is percent-encoded in keys, kept as is in the manifest.
    odd = next(m for m in records if m["database"] == "odd name=é")
    assert odd["object_key"].startswith("odd%20name%3D%C3%A9/")

    listing = json.loads(run_job("list", "--json", env=env).stdout)
    assert {e["database"] for e in listing} == set(databases)  # globals only with --globals
    globals_listing = json.loads(run_job("list", "--json", "--globals", env=env).stdout)
    assert [e["kind"] for e in globals_listing] == ["globals"]

    target = unique_name("odd_restored")
    restored = run_job(
        "restore", "--database", "odd name=é", "--target-db", target, "--force", env=env
    )
    assert restored.returncode == 0, restored.output
    with cluster.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2

    # Roles come back with restore --globals.
    cluster.execute("postgres", "DROP ROLE app_owner")
    roles = run_job("restore", "--globals", "--force", env=env)
    assert roles.returncode == 0, roles.output
    with cluster.connect() as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolcreatedb, rolpassword IS NOT NULL FROM pg_authid "
            "WHERE rolname = 'app_owner'"
        ).fetchone()
    assert row == (True, True, True)
    assert "app-Pass-42" not in roles.output


def test_latest_needs_a_database_when_several_exist(cluster, backup_dir, tmp_path):
    env = _env(cluster, backup_dir, tmp_path, BACKUP_DATABASES="shop,crm")
    assert run_job("backup", env=env).returncode == 0
    env_no_db = {k: v for k, v in env.items() if k != "PGDATABASE"}
    result = run_job("restore", "latest", "--force", "--target-db", "x", env=env_no_db)
    assert result.returncode == 2
    assert "--database" in result.stderr


def test_one_database_failing_does_not_stop_the_others(cluster, backup_dir, tmp_path):
    env = _env(cluster, backup_dir, tmp_path, BACKUP_DATABASES="shop,missing_db,crm")
    result = run_job("backup", env=env)
    assert result.returncode == 3, result.output
    assert "missing_db" in result.stderr
    assert sorted(m["database"] for m in manifests(backup_dir)) == ["crm", "shop"]


def test_globals_without_superuser_leave_passwords_out(cluster, backup_dir, tmp_path):
    cluster.execute(
        "postgres",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE "
        "rolname = 'app_owner') THEN CREATE ROLE app_owner LOGIN CREATEDB; END IF; "
        "END $$; ALTER ROLE app_owner PASSWORD 'app-Pass-42'",
    )
    cluster.execute("postgres", "GRANT CONNECT ON DATABASE crm TO app_owner")
    env = _env(
        cluster,
        backup_dir,
        tmp_path,
        BACKUP_DATABASES="all",
        PGUSER="app_owner",
        PGPASSWORD="app-Pass-42",
    )
    result = run_job("backup", env=env)
    # app_owner cannot read shop's tables: those dumps fail, the rest goes on.
    assert "no-role-passwords" in result.stderr
    kinds = [m["kind"] for m in manifests(backup_dir)]
    assert "globals" in kinds


def test_verify_restore_test_with_exact_counts(cluster, backup_dir, tmp_path):
    env = _env(cluster, backup_dir, tmp_path, PGDATABASE="shop", BACKUP_ROW_COUNTS="exact")
    assert run_job("backup", env=env).returncode == 0
    [record] = manifests(backup_dir)
    assert record["row_counts"]["mode"] == "exact"
    assert record["row_counts"]["tables"]["shop.customers"] == 2001
    before = set(cluster.databases())
    result = run_job("verify", "--restore-test", env=env)
    assert result.returncode == 0, result.output
    assert "exact row counts equal" in result.stderr
    assert set(cluster.databases()) == before  # the scratch database is gone


def test_restore_test_catches_a_wrong_count(cluster, backup_dir, tmp_path):
    env = _env(cluster, backup_dir, tmp_path, PGDATABASE="crm", BACKUP_ROW_COUNTS="exact")
    assert run_job("backup", env=env).returncode == 0
    [path] = list(backup_dir.rglob("*.manifest.json"))
    data = json.loads(path.read_text())
    data["row_counts"]["tables"]["public.contacts"] = 499
    path.write_text(json.dumps(data))
    before = set(cluster.databases())
    result = run_job("verify", "--restore-test", env=env)
    assert result.returncode == 5, result.output
    assert "public.contacts: 500 rows, manifest says 499" in result.stderr
    assert set(cluster.databases()) == before


def test_backup_verify_restore_after_every_backup(cluster, backup_dir, tmp_path):
    env = _env(
        cluster,
        backup_dir,
        tmp_path,
        PGDATABASE="crm",
        BACKUP_VERIFY="restore",
        BACKUP_ROW_COUNTS="exact",
        METRICS_FILE=str(tmp_path / "pgbackup.prom"),
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "test restore of crm-" in result.stderr
    # The test restore's measured time is published as a verify run's would be.
    from prometheus_client.parser import text_string_to_metric_families

    verify_metrics = (tmp_path / "pgbackup.verify.prom").read_text()
    samples = {
        sample.name: sample
        for family in text_string_to_metric_families(verify_metrics)
        for sample in family.samples
    }
    restore_time = samples["pgbackup_last_restore_test_seconds"]
    assert restore_time.labels["database"] == "crm" and restore_time.value > 0
    assert samples["pgbackup_last_verify_success"].value == 1
    assert samples["pgbackup_last_verify_success_timestamp_seconds"].value > 0


def test_restore_test_on_a_separate_scratch_server(cluster, pg17, backup_dir, tmp_path):
    from tests.fixtures.pgcluster import client_bindir

    env = _env(
        cluster,
        backup_dir,
        tmp_path,
        PGDATABASE="crm",
        BACKUP_ROW_COUNTS="exact",
        VERIFY_DATABASE_URL=pg17.url("postgres"),
        BACKUP_PG_BIN_DIRS=str(client_bindir(17)),
    )
    assert run_job("backup", env=env).returncode == 0
    before = set(pg17.databases())
    result = run_job("verify", "--restore-test", env=env)
    assert result.returncode == 0, result.output
    assert f"127.0.0.1:{pg17.port}" in result.stderr
    assert pg17.password not in result.output
    assert set(pg17.databases()) == before


def test_a_signal_during_the_backups_own_test_restore_is_exit_130(cluster, backup_dir, tmp_path):
    """SIGTERM while BACKUP_VERIFY=restore restores: the run was stopped (exit 130), it is not
    a backup that failed its test restore (exit 5), and no verify failure is published."""
    from tests.e2e.helpers import REAL_BIN

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("pg_dump", "psql", "pg_dumpall"):
        (bindir / tool).symlink_to(REAL_BIN / tool)
    script = bindir / "pg_restore"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *pgbackup_verify_*) kill -TERM "$PPID"; sleep 5 ;; esac\n'
        f'exec {REAL_BIN}/pg_restore "$@"\n'
    )
    script.chmod(0o755)
    env = _env(
        cluster,
        backup_dir,
        tmp_path,
        PGDATABASE="crm",
        BACKUP_VERIFY="restore",
        BACKUP_PG_BIN_DIRS=str(bindir),
        METRICS_FILE=str(tmp_path / "pgbackup.prom"),
    )
    result = run_job("backup", env=env)
    assert result.returncode == 130, result.output
    assert "failed its test restore" not in result.stderr
    assert not (tmp_path / "pgbackup.verify.prom").exists()


def test_all_databases_in_the_directory_format_with_exact_counts(cluster, backup_dir, tmp_path):
    """Every database (an odd name's objects percent-encoded in its own folder) dumped in the
    directory format, counted in the dump's snapshot and test-restored; the globals stay SQL."""
    env = _env(
        cluster,
        backup_dir,
        tmp_path,
        BACKUP_DATABASES="all",
        BACKUP_FORMAT="directory",
        BACKUP_JOBS="2",
        BACKUP_ROW_COUNTS="exact",
        BACKUP_VERIFY="restore",
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    by_db = {m["database"]: m for m in manifests(backup_dir) if m["kind"] == "database"}
    assert {"shop", "crm", "odd name=é"} <= set(by_db)
    assert all(m["format"] == "directory" for m in by_db.values())
    assert by_db["crm"]["row_counts"]["tables"] == {"public.contacts": 500}
    odd = by_db["odd name=é"]
    assert all(f["key"].startswith("odd%20name%3D%C3%A9/_objects/") for f in odd["files"])
    [roles] = [m for m in manifests(backup_dir) if m["kind"] == "globals"]
    assert roles["format"] == "custom" and roles["object_key"].endswith(".sql.zst")
    target = unique_name("odd_back")
    restored = run_job(
        "restore", "--database", "odd name=é", "--target-db", target, "--force", env=env
    )
    assert restored.returncode == 0, restored.output
    with cluster.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
