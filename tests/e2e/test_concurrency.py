"""Two copies of one job, hung dumps, deadlines: issue 10, items 4 (start-up cleanup), 5, 7, 12.

Two copies of the job on two machines are two processes with different ``BACKUP_LOCK_DIR``
against one database server and one destination.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_environ, run_job
from tests.e2e.helpers import fake_pg_dump, processes_running, visible_files
from tests.fixtures import faulty_proxy as proxy_fixtures

faulty_proxy_factory = proxy_fixtures.faulty_proxy_factory

EIGHT_HOURS_S = 8 * 3600


def _start_job(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "entrypoint.py"), "backup"],
        env={**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition never met")


def _partial(root: Path, key: str, age_s: float) -> Path:
    path = root / f"{key}.partial"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a dump")
    moment = time.time() - age_s
    os.utime(path, (moment, moment))
    return path


# -- item 5: a second copy of the job on another machine --------------------------------------


def test_second_copy_on_another_machine_is_skipped_and_leaves_the_first_alone(
    pg15, sample_db, job_env, backup_dir, tmp_path
):
    """Different lock directories (two pods): the server's advisory lock stops the second run
    before its start-up cleanup, and the first run's upload goes on to commit."""
    # The first run's dump waits for the second run to end (a gate, not a sleep: a loaded
    # machine may take seconds to start the second run); version probes pass at once.
    gate = tmp_path / "gate"
    slow = fake_pg_dump(
        tmp_path / "slow-bin",
        'case "$*" in *--version*) ;; *)\n'
        f'  for _ in $(seq 1200); do [ -e "{gate}" ] && break; sleep 0.1; done ;;\n'
        "esac\n"
        'exec /usr/lib/postgresql/15/bin/pg_dump "$@"',
    )
    (tmp_path / "pod-a").mkdir()
    (tmp_path / "pod-b").mkdir()
    first_env = {**job_env, "BACKUP_LOCK_DIR": str(tmp_path / "pod-a")}
    first = _start_job({**first_env, "BACKUP_PG_BIN_DIRS": str(slow)})
    try:
        _wait_for(lambda: list(backup_dir.rglob("*.partial")))  # the first run is uploading
        second = run_job("backup", env={**job_env, "BACKUP_LOCK_DIR": str(tmp_path / "pod-b")})
        assert second.returncode == 7, second.output
        assert "holds its lock on" in second.stderr and "pgbackup-job lock" in second.stderr
        assert "Traceback" not in second.output
        gate.touch()
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr
    files = visible_files(backup_dir)
    assert len([f for f in files if f.endswith(".manifest.json")]) == 1, files
    assert not list(backup_dir.rglob("*.partial"))
    # The lock died with the first run's session: the next run takes it.
    assert run_job("backup", env=first_env).returncode == 0


def test_lock_of_a_killed_run_is_released_by_the_server(pg15, sample_db, job_env, tmp_path):
    slow = fake_pg_dump(
        tmp_path / "slow-bin", 'sleep 30\nexec /usr/lib/postgresql/15/bin/pg_dump "$@"'
    )
    job = _start_job({**job_env, "BACKUP_PG_BIN_DIRS": str(slow)})
    _wait_for(lambda: processes_running(str(slow)))
    job.kill()  # SIGKILL: no cleanup of ours runs
    job.communicate()
    for cmdline in processes_running(str(slow)):
        assert "sleep" in cmdline or "pg_dump" in cmdline
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir()
    result = run_job("backup", env={**job_env, "BACKUP_LOCK_DIR": str(other_dir)})
    assert result.returncode == 0, result.output


# -- item 4 (start-up cleanup) and item 5 (its safe age) ---------------------------------------


def test_startup_cleanup_removes_only_old_leftovers_of_this_jobs_databases(
    sample_db, job_env, backup_dir
):
    ours_old = _partial(backup_dir, f"{sample_db}/{sample_db}-20250101T000000Z.dump.zst", 8 * 3600)
    ours_young = _partial(backup_dir, f"{sample_db}/{sample_db}-20250102T000000Z.dump.zst", 60)
    others = _partial(backup_dir, "app/app-20250101T000000Z.dump.zst", EIGHT_HOURS_S)
    prefixed = _partial(backup_dir, f"{sample_db}x/x-20250101T000000Z.dump.zst", EIGHT_HOURS_S)
    result = run_job("backup", env=job_env)
    assert result.returncode == 0, result.output
    assert not ours_old.exists()
    assert ours_young.exists(), "a young upload may be a live run's (another copy of the job)"
    assert others.exists(), "another job's database folder is not ours to clean"
    assert prefixed.exists()
    assert f"removed the unfinished upload {sample_db}/{sample_db}-20250101T000000Z" in (
        result.stderr
    )


# -- item 12: a hung run is not silent ---------------------------------------------------------


def _hold_table(pg15, database: str):
    conn = pg15.connect(database, autocommit=False)
    conn.execute("SET application_name = 'migration'")
    conn.execute("LOCK TABLE shop.customers IN ACCESS EXCLUSIVE MODE")
    return conn


def _history(backup_dir: Path) -> dict:
    [state] = list(backup_dir.rglob("status-*.json"))  # the job's own history (issue 19 item 13)
    return json.loads(state.read_text())


def test_lock_wait_timeout_names_the_table_and_the_blocking_session(
    pg15, sample_db, job_env, backup_dir
):
    holder = _hold_table(pg15, sample_db)
    try:
        started = time.monotonic()
        result = run_job("backup", env={**job_env, "BACKUP_LOCK_WAIT_TIMEOUT": "4s"}, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 3, result.output
    assert elapsed < 30
    assert "waiting" in result.stderr and "lock on table shop.customers" in result.stderr
    assert "application migration" in result.stderr and "idle in transaction" in result.stderr
    assert "hint: pg_dump waited for a lock on table shop.customers" in result.stderr
    assert "Traceback" not in result.output
    assert visible_files(backup_dir) == []


def test_backup_timeout_stops_a_hung_run_and_reports_it(pg15, sample_db, job_env, backup_dir):
    holder = _hold_table(pg15, sample_db)
    env = {**job_env, "BACKUP_TIMEOUT": "5s", "BACKUP_LOCK_WAIT_TIMEOUT": "1h"}
    try:
        started = time.monotonic()
        result = run_job("backup", env=env, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 3, result.output
    assert elapsed < 30
    assert "lock on table shop.customers" in result.stderr
    assert "error: the run took longer than BACKUP_TIMEOUT (5 s)" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.output
    assert visible_files(backup_dir) == []
    assert not list(backup_dir.rglob("*.partial"))
    assert _history(backup_dir)["consecutive_failures"] == 1
    with pg15.connect() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pg_dump%%'"
            " AND datname = %s",
            (sample_db,),
        ).fetchone()[0]
    assert left == 0


# -- item 7: aborts have a deadline ------------------------------------------------------------


@pytest.fixture(scope="module")
def incompressible_db(pg15):
    from tests.conftest import unique_name

    name = unique_name("noise")
    pg15.create_database(name)
    pg15.execute(
        name,
        "CREATE TABLE r AS SELECT g, md5(random()::text) || md5(random()::text) "
        "AS v FROM generate_series(1, 250000) g",
    )
    return name


def test_sigterm_while_parts_are_retried_ends_within_20s(
    pg15, incompressible_db, job_env, s3_server, faulty_proxy_factory
):
    bucket = s3_server.create_bucket()
    proxy = faulty_proxy_factory(s3_server.endpoint_url, fail_parts=10**9)
    env = {
        **job_env,
        "PGDATABASE": incompressible_db,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
        "S3_ENDPOINT_URL": proxy.url,
        "BACKUP_COMPRESSION": "none",
        "BACKUP_PART_SIZE_MB": "5",
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
        "BACKUP_RETRY_ATTEMPTS": "100",
        "BACKUP_RETRY_MAX_SECONDS": "3600",
        "BACKUP_RETRY_BACKOFF_SECONDS": "5",
    }
    job = _start_job(env)
    try:
        _wait_for(lambda: proxy.failed >= 2, timeout_s=60)
        time.sleep(1)  # the parts are now waiting to be retried
        job.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        job.send_signal(signal.SIGTERM)  # a second signal during the cleanup is harmless
        started = time.monotonic()
        _, stderr = job.communicate(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == 130, stderr
    assert elapsed < 20, f"stopped in {elapsed:.1f} s"
    assert "Traceback" not in stderr
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert [k for k in keys if "_state" not in k] == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_short_lock_wait_timeout_still_gets_a_lock_hint(pg15, sample_db, job_env, backup_dir):
    """Even when pg_dump gives up before the watcher's first look, the hint says why."""
    holder = _hold_table(pg15, sample_db)
    try:
        result = run_job("backup", env={**job_env, "BACKUP_LOCK_WAIT_TIMEOUT": "1s"}, timeout=60)
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 3, result.output
    [hint] = [line for line in result.stderr.splitlines() if line.startswith("hint:")]
    assert "BACKUP_LOCK_WAIT_TIMEOUT" in hint
    assert visible_files(backup_dir) == []
