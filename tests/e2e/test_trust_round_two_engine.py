"""Issue 19, round two of "nothing silent", the engine's part: a future-dated backup is never
what ``latest`` means; a prune that could not collect says so with exit 7; each job keeps its
own run history on a shared prefix; a test restore applies the database's own properties."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from backup.config import load
from backup.job.lock import local_lock_path
from tests.conftest import REPO, clean_environ, run_job, unique_name
from tests.e2e.helpers import manifests, wait_for_pg_dump
from tests.e2e.test_directory_format import DIR_ENV
from tests.e2e.test_trust import plant
from tests.fixtures import http as http_fixtures
from tests.fixtures.http import WEBHOOK_PATH, channel_env

recording_server = http_fixtures.recording_server


def test_latest_skips_a_future_dated_backup(pg15, sample_db, job_env, backup_dir):
    """``restore latest`` and ``verify latest`` take the newest backup not dated in the
    future; the future-dated one is still restorable by its name."""
    assert run_job("backup", env=job_env).returncode == 0
    [real] = manifests(backup_dir)
    future = plant(backup_dir, real, sample_db, datetime.now(UTC) + timedelta(days=10))

    verified = run_job("verify", env=job_env)
    assert verified.returncode == 0, verified.output
    assert f"ok: {real['name']}" in verified.stdout
    assert "dated in the future" in verified.stderr and future["name"] in verified.stderr

    target = unique_name("latest_not_future")
    dry = run_job("restore", "--dry-run", "--target-db", target, env=job_env)
    assert dry.returncode == 0, dry.output
    assert real["name"] in dry.stdout and future["name"] not in dry.stdout

    by_name = run_job("verify", future["name"], env=job_env)
    assert by_name.returncode == 0, by_name.output
    assert f"ok: {future['name']}" in by_name.stdout
    named = run_job("restore", future["name"], "--dry-run", "--target-db", target, env=job_env)
    assert named.returncode == 0 and future["name"] in named.stdout, named.output


def test_latest_with_only_a_future_dated_backup_finds_none(sample_db, job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    [real] = manifests(backup_dir)
    plant(backup_dir, real, sample_db, datetime.now(UTC) + timedelta(days=3))
    (backup_dir / real["object_key"]).unlink()
    (backup_dir / sample_db / f"{real['name']}.manifest.json").unlink()
    result = run_job("verify", env=job_env)
    assert result.returncode == 2, result.output
    assert "no complete backup found" in result.stderr
    assert "dated in the future" in result.stderr


def test_a_sigkilled_directory_backup_leaves_a_spool_the_next_run_removes(
    pg15, job_env, backup_dir, tmp_path
):
    """Item 5: the killed run's spool (its uncompressed table files) is removed by the next
    run of the same job; another job's spool, and one whose process lives, are left alone."""
    database = unique_name("killed_spool")
    pg15.create_database(database)
    pg15.execute(
        database,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 250) AS filler "
        "FROM generate_series(1, 300000) g",
    )
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {
        **clean_environ(),
        **job_env,
        **DIR_ENV,
        "PGDATABASE": database,
        "BACKUP_COMPRESSION": "none",
        "TMPDIR": str(spool),
        "BACKUP_PROGRESS_SECONDS": "0",
    }
    # Another job's spool (other databases), and one of this job whose process is alive.
    other = spool / "pgbackup-dir-0123456789abcdef-keep"
    other.mkdir()
    (other / "owner.json").write_text(
        json.dumps({"job": "0123456789abcdef", "host": socket.gethostname(), "pid": 1})
    )
    job = subprocess.Popen(
        [sys.executable, str(REPO / "entrypoint.py"), "backup"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the job and its pg_dump, as a pod
    )
    try:
        wait_for_pg_dump(pg15, database, "query ILIKE 'COPY public.big%%'", "copied big")
        [left] = [p for p in spool.iterdir() if p != other]
        assert list((left / "dump").glob("*.dat")), "pg_dump had not begun its file"
        tag = json.loads((left / "owner.json").read_text())["job"]
        alive = spool / f"pgbackup-dir-{tag}-alive"
        alive.mkdir()
        (alive / "owner.json").write_text(
            json.dumps({"job": tag, "host": socket.gethostname(), "pid": os.getpid()})
        )
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the OOM killer, a lost node: no cleanup at all
        job.wait(timeout=60)
    assert left.exists() and manifests(backup_dir) == []

    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert not left.exists()
    assert f"removed the spool {left}" in result.stderr
    assert sorted(spool.iterdir()) == sorted([other, alive])


def test_a_prune_that_cannot_collect_for_the_lock_exits_7(sample_db, job_env, backup_dir):
    """Item 11: retention is applied and said, then exit 7 (as a skipped backup): a scheduled
    prune learns that the content objects were not collected."""
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    path = local_lock_path(load({**clean_environ(), **env}))
    with open(path, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a backup of this job is running
        result = run_job("prune", env=env)
        dry = run_job("prune", "--dry-run", env=env)
    assert result.returncode == 7, result.output
    assert "deleted 0 backup(s), kept 1" in result.stdout
    assert "error: retention applied, but the content objects" in result.stderr
    assert dry.returncode == 0, dry.output  # a dry run collects nothing: it needs no lock
    assert run_job("prune", env=env).returncode == 0


def test_two_jobs_on_one_bucket_keep_their_own_streaks(
    pg15, sample_db, job_env, backup_dir, recording_server
):
    """Item 13: a job whose backups fail keeps counting its failures in a row (and escalates
    after ALERT_AFTER_FAILURES) while another job on the same prefix succeeds in between."""
    good = {**job_env, **channel_env(recording_server), "ALERT_AFTER_FAILURES": "2"}
    missing = unique_name("gone")  # a database that does not exist: every backup fails
    bad = {**good, "PGDATABASE": missing}
    counts = []
    for _ in range(2):
        assert run_job("backup", env=bad).returncode == 3
        counts.append(recording_server.requests_to(WEBHOOK_PATH)[-1].json())
        assert run_job("backup", env=good).returncode == 0
    assert [c["consecutive_failures"] for c in counts] == [1, 2]
    assert [c["escalated"] for c in counts] == [False, True]
    states = sorted((backup_dir / "_state").glob("status-*.json"))
    assert len(states) == 2
    assert not (backup_dir / "_state" / "status.json").exists()
    by_db = {
        db: json.loads(p.read_text())
        for p in states
        for db in json.loads(p.read_text())["databases"]
    }
    assert set(by_db) == {sample_db, missing}
    assert (
        by_db[missing]["consecutive_failures"] == 2
        and by_db[sample_db]["consecutive_failures"] == 0
    )
    status = json.loads(run_job("status", "--json", env=bad).stdout)
    assert [(r["database"], r["consecutive_failures"]) for r in status] == [(missing, 2)]


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_the_test_restore_applies_the_databases_own_properties(pg15, job_env, fmt):
    """Item 15: the test restore gives the scratch database the backed-up database's owner,
    settings, comment and grants; a grant to a role this server no longer has is a warning,
    and the test still passes."""
    database = unique_name("props_test")
    ghost = unique_name("ghost_role")
    pg15.create_database(database)
    pg15.execute(
        database,
        f"CREATE TABLE t AS SELECT 1 AS id; "
        f"ALTER DATABASE {database} SET work_mem = '7MB'; "
        f"COMMENT ON DATABASE {database} IS 'the shop''s database'; "
        f"CREATE ROLE {ghost}; GRANT CONNECT ON DATABASE {database} TO {ghost}",
    )
    env = {**job_env, "PGDATABASE": database, "BACKUP_FORMAT": fmt, "BACKUP_JOBS": "2"}
    assert run_job("backup", env=env).returncode == 0

    tested = run_job("verify", "--restore-test", env=env)
    assert tested.returncode == 0, tested.output
    applied = next(line for line in tested.stderr.splitlines() if "properties applied" in line)
    assert "comment" in applied and "setting" in applied and "grant" in applied, applied
    assert "not applied" not in tested.stderr

    pg15.execute(database, f"REVOKE ALL ON DATABASE {database} FROM {ghost}; DROP ROLE {ghost}")
    tested = run_job("verify", "--restore-test", env=env)
    assert tested.returncode == 0, tested.output
    assert "passed" in tested.stderr
    warning = next(line for line in tested.stderr.splitlines() if "not applied" in line)
    assert "WARNING" in warning and f'role "{ghost}" does not exist' in warning, warning
    applied = next(line for line in tested.stderr.splitlines() if "properties applied" in line)
    assert "comment" in applied and "setting" in applied, applied
