"""BACKUP_PARALLEL_DATABASES: several databases dumped and uploaded at once, each its own
stream and manifest; one failing fails alone; a signal or BACKUP_TIMEOUT stops every dump in
flight and commits nothing."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, clean_environ, run_job, unique_name
from tests.e2e.helpers import manifests, visible_files, wait_for_pg_dump
from tests.fixtures.pgcluster import Cluster, find_bindir

DATABASES = [f"tenant_{n}" for n in range(1, 7)]


@pytest.fixture(scope="module")
def cluster():
    own = Cluster(find_bindir(15)).start()
    for n, name in enumerate(DATABASES, start=1):
        own.create_database(name)
        own.execute(
            name,
            "CREATE TABLE items (id int PRIMARY KEY, tenant text, payload text); "
            f"INSERT INTO items SELECT g, '{name}', md5(g::text) "
            f"FROM generate_series(1, {1000 * n}) g",
        )
    yield own
    own.stop()


def _env(cluster, backup_dir, tmp_path, **extra):
    return cluster.env(
        "postgres",
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_DATABASES=",".join(DATABASES),
        BACKUP_PARALLEL_DATABASES="3",
        **extra,
    )


def _start_job(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "entrypoint.py"), "backup"],
        env={**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@contextlib.contextmanager
def _tables_locked(cluster, databases):
    """Each database's table held in ACCESS EXCLUSIVE mode: its pg_dump waits."""
    with contextlib.ExitStack() as stack:
        for name in databases:
            conn = stack.enter_context(cluster.connect(name, autocommit=False))
            conn.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        yield


def _dumps_waiting(cluster, databases):
    for name in databases:
        wait_for_pg_dump(cluster, name, "wait_event_type = 'Lock'", "waited for the lock")


def test_three_at_once_six_committed_and_restorable(cluster, backup_dir, tmp_path):
    env = _env(cluster, backup_dir, tmp_path)
    # Three dumps wait for their locks at the same moment: three databases are in flight.
    with _tables_locked(cluster, DATABASES[:3]):
        job = _start_job(env)
        _dumps_waiting(cluster, DATABASES[:3])
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr
    assert "dumping up to 3 databases at once" in stderr
    records = manifests(backup_dir)
    assert sorted(m["database"] for m in records) == DATABASES
    for n, name in enumerate(DATABASES, start=1):
        target = unique_name("back")
        restored = run_job("restore", "--database", name, "--target-db", target, "--force", env=env)
        assert restored.returncode == 0, restored.output
        with cluster.connect(target) as conn:
            row = conn.execute("SELECT count(*), min(tenant), max(tenant) FROM items").fetchone()
        assert row == (1000 * n, name, name)
    # The results keep the databases' order: the run history lists them as configured.
    status = run_job("status", "--json", env=env)
    assert status.returncode == 0, status.output


def test_one_failing_database_fails_alone(cluster, backup_dir, tmp_path):
    env = _env(cluster, backup_dir, tmp_path, BACKUP_LOCK_WAIT_TIMEOUT="1s")
    with _tables_locked(cluster, ["tenant_4"]):
        result = run_job("backup", env=env)
    assert result.returncode == 3, result.output
    assert "backup failed for tenant_4" in result.output
    assert sorted(m["database"] for m in manifests(backup_dir)) == [
        d for d in DATABASES if d != "tenant_4"
    ]


def _nothing_left(cluster, backup_dir) -> None:
    assert visible_files(backup_dir) == []
    assert not list(backup_dir.rglob("*.partial"))
    time.sleep(0.5)
    with cluster.connect() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pg_dump%%'"
        ).fetchone()[0]
    assert left == 0


@pytest.mark.parametrize("how", ["SIGTERM", "BACKUP_TIMEOUT"])
def test_a_stop_ends_every_dump_in_flight(cluster, backup_dir, tmp_path, how):
    extra = {"BACKUP_TIMEOUT": "5s"} if how == "BACKUP_TIMEOUT" else {}
    env = _env(cluster, backup_dir, tmp_path, **extra)
    with _tables_locked(cluster, DATABASES[:3]):
        job = _start_job(env)
        _dumps_waiting(cluster, DATABASES[:3])
        if how == "SIGTERM":
            job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=60)
        # Checked while the locks are still held: the dumps were stopped, not finished.
        assert job.returncode == (130 if how == "SIGTERM" else 3), stderr
        assert ("received SIGTERM" if how == "SIGTERM" else "BACKUP_TIMEOUT") in stderr
        assert "stopping 3 dump(s) in flight" in stderr, stderr
        assert manifests(backup_dir) == []
        _nothing_left(cluster, backup_dir)


# -- the start-up cleanup of unfinished uploads over hundreds of folders -------------------------


def test_one_listing_cleans_the_unfinished_uploads_of_the_jobs_folders_only(s3_server) -> None:
    """On S3 the start-up cleanup lists the destination's unfinished uploads once, not once per
    database folder, and still aborts only those of the job's own folders."""
    from backup import dump, manifest
    from backup.config import load
    from backup.storage.s3 import S3Storage

    bucket = s3_server.create_bucket()
    client = s3_server.client()
    names = {
        "ours": "pg/tenant_1/tenant_1-20250101T000000Z.dump.zst",
        "ours too": "pg/tenant_2/tenant_2-20250101T000000Z.dump.zst",
        "another database": "pg/app/app-20250101T000000Z.dump.zst",
        "a name it prefixes": "pg/tenant_10/tenant_10-20250101T000000Z.dump.zst",
        "another job": "pg2/tenant_1/tenant_1-20250101T000000Z.dump.zst",
    }
    for name in names.values():
        client.create_multipart_upload(Bucket=bucket, Key=name)
    storage = S3Storage(s3_server.client(), bucket, "pg")
    listings = []
    storage.client.meta.events.register(
        "before-call.s3.ListMultipartUploads", lambda **_: listings.append(1)
    )
    scope = manifest.Scope(frozenset({"tenant_1", "tenant_2", "tenant_3"}))
    config = load({"PGHOST": "db", "PGDATABASE": "x", "BACKUP_DESTINATIONS": f"s3://{bucket}/pg"})
    dump._clean_unfinished_uploads(config, [storage], scope)  # young: a live run's, kept
    assert len(listings) == 1
    assert storage.cleanup_incomplete_in([f"{f}/" for f in scope.folders()], 0.0) == 2
    left = {u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}
    assert left == {names["another database"], names["a name it prefixes"], names["another job"]}


def test_a_dump_shorter_than_a_poll_opens_no_lock_watcher_session(cluster, tmp_path) -> None:
    """The lock watcher connects at its first look, one poll after the dump starts: hundreds of
    small databases cost no watcher session each, a dump that waits still gets one."""
    from backup.config import load
    from backup.postgres.lockwatch import LockWatcher

    config = load({**cluster.env("postgres"), "BACKUP_DESTINATIONS": f"file://{tmp_path}"})

    def watchers() -> int:
        with cluster.connect() as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'pgbackup-job lock watcher'"
            ).fetchone()[0]

    with LockWatcher(config.postgres, DATABASES[0], "nobody", "a short dump", poll_s=30.0):
        assert watchers() == 0
    with LockWatcher(config.postgres, DATABASES[0], "nobody", "a long dump", poll_s=0.05):
        deadline = time.monotonic() + 30
        while watchers() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watchers() == 1
