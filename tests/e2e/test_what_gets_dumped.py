"""What gets dumped: BACKUP_PG_DUMP_ARGS, BACKUP_EXCLUDE_TABLE_DATA and BACKUP_EXCLUDE_DATABASES
through real backups, test restores and restores on PostgreSQL 15."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests, visible_files
from tests.fixtures.compare import fingerprint_db
from tests.fixtures.pgcluster import Cluster, find_bindir, free_port


def _tables(cluster, database: str) -> dict[str, int]:
    """``schema.table`` -> rows of every ordinary table of ``database``."""
    with cluster.connect(database) as conn:
        names = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        return {
            f"{s}.{t}": conn.execute(
                f'SELECT count(*) FROM "{s.replace(chr(34), chr(34) * 2)}".'
                f'"{t.replace(chr(34), chr(34) * 2)}"'
            ).fetchone()[0]
            for s, t in names
        }


def test_exclude_table_data_keeps_the_table_empty_and_verify_passes(
    pg15, sample_db, job_env, backup_dir
):
    env = {
        **job_env,
        "BACKUP_EXCLUDE_TABLE_DATA": "shop.audit_log, shop.nothing_matches_*",
        "BACKUP_ROW_COUNTS": "exact",
    }
    source = _tables(pg15, sample_db)
    assert source["shop.audit_log"] > 0
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    [record] = manifests(backup_dir)
    assert record["excluded"]["table_data_patterns"] == [
        "shop.audit_log",
        "shop.nothing_matches_*",
    ]
    assert record["excluded"]["table_data"] == ["shop.audit_log"]
    assert "tables" not in record["excluded"]
    counts = record["row_counts"]
    assert counts["mode"] == "exact" and counts["without_data"] == ["shop.audit_log"]
    assert "shop.audit_log" not in counts["tables"]
    # Names with spaces are matched by OID, still counted.
    assert counts["tables"]["Odd Schema.Mixed Case Table"] == source["Odd Schema.Mixed Case Table"]
    assert counts["tables"]["shop.customers"] == source["shop.customers"]

    verified = run_job("verify", "--restore-test", env=env)
    assert verified.returncode == 0, verified.output
    assert "exact row counts equal" in verified.stderr

    target = unique_name("restored")
    restored = run_job("restore", "latest", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    after = _tables(pg15, target)
    assert after["shop.audit_log"] == 0  # the schema kept, the rows skipped
    assert after == {**source, "shop.audit_log": 0}  # every other table complete


def test_restore_test_still_checks_a_table_kept_without_rows(pg15, sample_db, job_env, backup_dir):
    env = {**job_env, "BACKUP_EXCLUDE_TABLE_DATA": "shop.audit_log", "BACKUP_ROW_COUNTS": "exact"}
    assert run_job("backup", env=env).returncode == 0
    [path] = list(backup_dir.rglob("*.manifest.json"))
    data = json.loads(path.read_text())
    data["row_counts"]["without_data"].append("shop.vanished")
    path.write_text(json.dumps(data))
    result = run_job("verify", "--restore-test", env=env)
    assert result.returncode == 5, result.output
    assert "missing: shop.vanished" in result.stderr


def test_pg_dump_args_reach_pg_dump(pg15, sample_db, job_env, backup_dir):
    pg15.execute(sample_db, "CREATE TABLE public.big (x int); INSERT INTO public.big VALUES (1)")
    env = {
        **job_env,
        # Split like a shell: the quoted pattern is one word; -T and its value are two.
        "BACKUP_PG_DUMP_ARGS": "-T public.big --exclude-table='\"Odd Schema\".empty_table' -x",
        "BACKUP_ROW_COUNTS": "exact",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "pg_dump options of every database dump: -T public.big" in result.stderr
    assert "leaves out the tables Odd Schema.empty_table, public.big" in result.stderr
    [record] = manifests(backup_dir)
    assert record["pg_dump_args"] == [
        "-T",
        "public.big",
        '--exclude-table="Odd Schema".empty_table',
        "-x",
    ]
    assert record["excluded"]["tables"] == ["Odd Schema.empty_table", "public.big"]
    assert "public.big" not in record["row_counts"]["tables"]

    verified = run_job("verify", "--restore-test", env=env)
    assert verified.returncode == 0, verified.output

    target = unique_name("restored")
    restored = run_job("restore", "latest", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    after = _tables(pg15, target)
    assert "public.big" not in after and "Odd Schema.empty_table" not in after
    assert after["shop.customers"] == _tables(pg15, sample_db)["shop.customers"]


def test_schema_exclusion_with_estimates(pg15, sample_db, job_env, backup_dir):
    env = {
        **job_env,
        "BACKUP_PG_DUMP_ARGS": "--exclude-sch '\"Odd Schema\"'",
        "BACKUP_ROW_COUNTS": "estimate",
    }
    assert run_job("backup", env=env).returncode == 0
    [record] = manifests(backup_dir)
    assert record["row_counts"]["tables"]
    assert not any(t.startswith("Odd Schema.") for t in record["row_counts"]["tables"])
    assert record["excluded"]["tables"] == [
        "Odd Schema.Mixed Case Table",
        "Odd Schema.empty_table",
    ]
    verified = run_job("verify", "--restore-test", env=env)
    assert verified.returncode == 0, verified.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ("-Fp", "-F"),
        ("-fout.dump", "-f"),
        ("--format=plain", "--format"),
        ("--form=p", "--form"),
        ("--file=x", "--file"),
        ("-Z9", "-Z"),
        ("-j 4", "-j"),
        ("-xs", "-s"),
        ("--data-only", "--data-only"),
        ("-h elsewhere", "-h"),
        ("--port=1", "--port"),
        ("-U postgres", "-U"),
        ("--dbn=other", "--dbn"),
        ("--role=admin", "--role"),
        ("--snapshot=x", "--snapshot"),
        ("otherdb", "otherdb"),
        ("-T 'unclosed", "BACKUP_PG_DUMP_ARGS"),
    ],
)
def test_refused_pg_dump_args_exit_2_and_write_nothing(job_env, backup_dir, args, named):
    result = run_job("backup", env={**job_env, "BACKUP_PG_DUMP_ARGS": args})
    assert result.returncode == 2, result.output
    assert "BACKUP_PG_DUMP_ARGS" in result.stderr and named in result.stderr
    assert "Traceback" not in result.output
    assert visible_files(backup_dir) == []


@pytest.fixture(scope="module")
def cluster():
    """A cluster of its own: 'all' means every database on it."""
    own = Cluster(find_bindir(15)).start()
    for name in ("keep_a", "keep_b", "huge"):
        own.create_database(name)
        own.execute(name, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    yield own
    own.stop()


def test_exclude_databases_with_all(cluster, backup_dir, tmp_path):
    env = cluster.env(
        "postgres",
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_DATABASES="all",
        BACKUP_EXCLUDE_DATABASES="huge, postgres, no_such_db",
    )
    # An older backup of huge, from when it was still backed up.
    before = {**env, "BACKUP_DATABASES": "huge", "BACKUP_EXCLUDE_DATABASES": ""}
    assert run_job("backup", env=before).returncode == 0
    huge_backups = [m for m in manifests(backup_dir) if m["database"] == "huge"]
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "BACKUP_EXCLUDE_DATABASES" in result.stderr and "no_such_db" in result.stderr
    records = manifests(backup_dir)
    assert sorted(m["database"] for m in records if m["kind"] == "database") == [
        "huge",
        "keep_a",
        "keep_b",
    ]
    assert [m for m in records if m["database"] == "huge"] == huge_backups  # no new one
    assert [m["kind"] for m in records].count("globals") == 1

    # An excluded database is outside the job, as one dropped from a list is: status does not
    # call it stale, retention does not touch its old backups.
    status = run_job("status", env=env)
    assert status.returncode == 0, status.output
    assert "keep_a" in status.stdout and "huge" not in status.stdout
    # With the server down, status goes by the backups it finds: still not the excluded one.
    down = run_job("status", env={**env, "PGPORT": str(free_port())})
    assert "cannot list the server's databases" in down.stderr
    assert "keep_a" in down.stdout and "huge" not in down.stdout


def test_excluding_a_listed_database_is_refused(cluster, backup_dir, tmp_path):
    env = cluster.env(
        "postgres",
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_DATABASES="keep_a,huge",
        BACKUP_EXCLUDE_DATABASES="huge",
    )
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    assert "BACKUP_EXCLUDE_DATABASES" in result.stderr and "'huge'" in result.stderr
    assert visible_files(backup_dir) == []


def test_restore_of_a_backup_with_pg_dump_args_round_trips(pg15, sample_db, job_env):
    env = {**job_env, "BACKUP_PG_DUMP_ARGS": "--no-comments"}
    assert run_job("backup", env=env).returncode == 0
    target = unique_name("restored")
    assert run_job("restore", "--target-db", target, "--force", env=env).returncode == 0
    with pg15.connect(target) as conn:
        comment = conn.execute("SELECT obj_description('shop.customers'::regclass)").fetchone()
    assert comment == (None,)
    assert fingerprint_db(pg15, target) != fingerprint_db(pg15, sample_db)  # comments left out


def test_without_a_readable_table_of_contents_nothing_is_guessed(pg15, sample_db, job_env):
    """A TOC larger than the head kept cannot be read: without options every table of the
    catalog is what pg_dump dumped; with options, no table is expected rather than a guess."""
    from backup.config import load
    from backup.postgres import contents

    plain = load({**job_env, "BACKUP_ROW_COUNTS": "estimate"})
    catalog = contents.server_tables(plain, sample_db, None)
    counts, excluded = contents.describe(plain, sample_db, catalog, None, None)
    assert set(counts["tables"]) == set(catalog.values()) and excluded == {}

    narrowed = load({**job_env, "BACKUP_EXCLUDE_TABLE_DATA": "shop.audit_log"})
    counts, excluded = contents.describe(narrowed, sample_db, catalog, None, None)
    assert counts == {} and excluded == {"table_data_patterns": ["shop.audit_log"]}


def test_pg18_archive_and_its_own_options(pg18, backup_dir, tmp_path):
    """pg_dump 18's table of contents (statistics entries besides the tables) is read the same
    way, and an option only 18 has reaches it."""
    from tests.fixtures.pgcluster import client_bindir

    database = unique_name("shop18")
    pg18.create_sample_database(database)
    env = pg18.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_PG_BIN_DIRS=str(client_bindir(18)),
        BACKUP_PG_DUMP_ARGS="--no-statistics -T shop.cache",
        BACKUP_EXCLUDE_TABLE_DATA="shop.audit_log",
        BACKUP_ROW_COUNTS="exact",
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    [record] = manifests(backup_dir)
    assert record["pg_dump_version"].startswith("18.")
    assert record["excluded"]["table_data"] == ["shop.audit_log"]
    assert record["excluded"]["tables"] == ["shop.cache"]
    assert record["row_counts"]["tables"]["shop.customers"] == 2001
    verified = run_job("verify", "--restore-test", env=env)
    assert verified.returncode == 0, verified.output
