"""Timeouts a DBA sets on the role or the database (issue 19): a bigger server often has
``idle_in_transaction_session_timeout``, ``idle_session_timeout`` or ``statement_timeout`` set
for the applications. pg_dump turns them off for its own session; the job's own sessions (the
lock held for the run, the snapshot the exact row counts are taken in) must not die of them
halfway through a long dump either."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import REPO, clean_environ
from tests.e2e.helpers import manifests, wait_for_pg_dump


def _start_job(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "entrypoint.py"), "backup"],
        env={**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **env},
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _lock_sessions(conn, database: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s "
        "AND a.application_name LIKE 'pgbackup-job lock%%'",
        (database,),
    ).fetchone()[0]


def test_the_jobs_sessions_outlive_the_databases_idle_timeouts(
    pg15, sample_db, job_env, backup_dir
):
    pg15.execute(
        "postgres",
        f"ALTER DATABASE \"{sample_db}\" SET idle_in_transaction_session_timeout = '1s'",
    )
    pg15.execute("postgres", f"ALTER DATABASE \"{sample_db}\" SET idle_session_timeout = '1s'")
    pg15.execute("postgres", f"ALTER DATABASE \"{sample_db}\" SET statement_timeout = '1s'")
    blocker = pg15.connect(sample_db, autocommit=False)
    job = None
    try:
        # The dump waits behind this lock for a few seconds, longer than every timeout.
        blocker.execute("SET idle_in_transaction_session_timeout = 0")
        blocker.execute("SET statement_timeout = 0")
        blocker.execute("LOCK TABLE shop.customers IN ACCESS EXCLUSIVE MODE")
        job = _start_job({**job_env, "BACKUP_ROW_COUNTS": "exact"})
        wait_for_pg_dump(pg15, sample_db, "wait_event_type = 'Lock'", "waited for the lock")
        time.sleep(2.5)  # the timeouts (1 s) have fired by now, had they applied
        with pg15.connect() as conn:
            assert _lock_sessions(conn, sample_db) == 1, "the job's lock session was ended"
        blocker.rollback()
        output, _ = job.communicate(timeout=120)
    finally:
        blocker.close()
        if job is not None and job.poll() is None:
            job.kill()
            job.wait()
        pg15.execute("postgres", f'ALTER DATABASE "{sample_db}" RESET ALL')
    assert job.returncode == 0, output
    [record] = manifests(backup_dir)
    assert record["row_counts"]["mode"] == "exact"
    assert record["row_counts"]["tables"]["shop.customers"] > 0
