"""Backing up from a streaming hot standby (issue 19): a real primary and a real standby made by
``pg_basebackup -R``. The backup works there, says where it came from, refuses a standby that
stopped replaying, and explains a dump cancelled by recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_environ, run_job, unique_name
from tests.e2e.helpers import manifests, wait_for_pg_dump
from tests.fixtures.pgcluster import Cluster, client_bindir, find_bindir
from tests.fixtures.standby import Standby


@pytest.fixture(scope="module")
def primary():
    cluster = Cluster(find_bindir(15)).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def standby(primary):
    # A short max_standby_streaming_delay: a recovery conflict resolves in a second.
    replica = Standby(primary, {"max_standby_streaming_delay": "1s"}).start()
    yield replica
    replica.stop()


@pytest.fixture
def database(primary, standby) -> str:
    name = unique_name("big")
    primary.create_database(name)
    primary.load_sample(name)
    standby.catch_up()
    return name


def _env(server: Cluster, database: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    backups = tmp_path / "backups"
    backups.mkdir(exist_ok=True)
    return server.env(
        database, BACKUP_DESTINATIONS=f"file://{backups}", BACKUP_LOCK_DIR=str(tmp_path), **extra
    )


def test_a_backup_from_a_standby_says_so_counts_rows_and_restores(
    primary, standby, database, tmp_path
):
    env = _env(
        standby,
        database,
        tmp_path,
        BACKUP_ROW_COUNTS="exact",
        BACKUP_VERIFY="restore",
        VERIFY_DATABASE_URL=primary.url(),
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "standby" in result.output
    [record] = manifests(tmp_path / "backups")
    assert record["source"]["standby"] is True
    assert record["source"]["replay_timestamp"]
    assert record["row_counts"]["mode"] == "exact"
    with primary.connect(database) as conn:
        customers = conn.execute("SELECT count(*) FROM shop.customers").fetchone()[0]
    assert record["row_counts"]["tables"]["shop.customers"] == customers


def test_a_backup_from_a_primary_says_it_was_not_a_standby(primary, database, tmp_path):
    result = run_job("backup", env=_env(primary, database, tmp_path))
    assert result.returncode == 0, result.output
    [record] = manifests(tmp_path / "backups")
    assert record["source"] == {"standby": False}


def test_a_test_restore_on_a_standby_needs_another_server(standby, database, tmp_path):
    """A standby is read-only: the test restore must go elsewhere, said before any dump."""
    result = run_job("backup", env=_env(standby, database, tmp_path, BACKUP_VERIFY="restore"))
    assert result.returncode == 2, result.output
    assert "VERIFY_DATABASE_URL" in result.stderr and "standby" in result.stderr
    assert manifests(tmp_path / "backups") == []
    assert "Traceback" not in result.output


def test_check_reports_a_standby_and_its_replay(standby, database, tmp_path):
    result = run_job("check", env=_env(standby, database, tmp_path))
    assert result.returncode == 0, result.output
    assert "hot standby" in result.stdout
    assert "replay" in result.stdout


def test_a_standby_that_stopped_replaying_is_refused(primary, standby, database, tmp_path):
    standby.pause_replay()
    try:
        primary.execute(database, "INSERT INTO shop.customers (email) VALUES ('new@x.org')")
        # The standby received the row but does not apply it; wait until its data is over a
        # second behind the primary's.
        deadline = time.monotonic() + 30
        with standby.connect() as conn:
            while time.monotonic() < deadline:
                behind = conn.execute(
                    "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
                ).fetchone()[0]
                if behind is not None and behind > 2:
                    break
                time.sleep(0.1)
        env = _env(standby, database, tmp_path, BACKUP_STANDBY_MAX_LAG="1s")
        result = run_job("backup", env=env)
        assert result.returncode == 3, result.output
        assert "BACKUP_STANDBY_MAX_LAG" in result.stderr and "paused" in result.stderr
        assert manifests(tmp_path / "backups") == []
        checked = run_job("check", env=env)
        assert checked.returncode == 3, checked.output
        assert "stale" in checked.output
        # Turned off (a delayed standby on purpose): the backup runs, and says how stale.
        result = run_job("backup", env={**env, "BACKUP_STANDBY_MAX_LAG": "0"})
        assert result.returncode == 0, result.output
        [record] = manifests(tmp_path / "backups")
        assert record["source"]["replay_lag_s"] > 1
    finally:
        standby.resume_replay()
        standby.catch_up()


def _children(parent: int, name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and comm == name:
            found.append(int(entry))
    return found


def _wait(predicate, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_a_dump_cancelled_by_recovery_says_what_to_set(primary, standby, tmp_path):
    """A transaction on the primary locks a table the dump holds: after
    max_standby_streaming_delay the standby ends the dump. The job says why and what to set."""
    name = unique_name("conflict")
    primary.create_database(name)
    primary.execute(name, "CREATE TABLE a (x int); INSERT INTO a VALUES (1)")
    primary.execute(name, "CREATE TABLE b (y int)")
    standby.catch_up()
    blocker = primary.connect(name, autocommit=False)
    second = None
    job = None
    try:
        # 1. The primary locks b; the standby replays the lock; pg_dump (a, then b) waits on b.
        blocker.execute("LOCK TABLE b IN ACCESS EXCLUSIVE MODE")
        primary.execute("postgres", "SELECT pg_switch_wal()")
        with standby.connect(name) as conn:
            _wait(
                lambda: conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'b'::regclass "
                    "AND mode = 'AccessExclusiveLock'"
                ).fetchone()[0],
                "the standby replays the lock",
            )
        env = {**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **_env(standby, name, tmp_path)}
        job = subprocess.Popen(
            [sys.executable, str(REPO / "entrypoint.py"), "backup"],
            env=env,
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with standby.connect(name) as conn:
            _wait(
                lambda: conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                    "'pg_dump%%' AND wait_event_type = 'Lock'"
                ).fetchone()[0],
                "pg_dump waits for b",
            )
        # 2. pg_dump stopped: its backend idles in its transaction, holding a and b.
        [pg_dump] = _children(job.pid, "pg_dump")
        os.kill(pg_dump, signal.SIGSTOP)
        blocker.rollback()
        # 3. The primary locks a: replaying that lock conflicts with the dump's transaction.
        second = primary.connect(name, autocommit=False)
        second.execute("LOCK TABLE a IN ACCESS EXCLUSIVE MODE")
        primary.execute("postgres", "SELECT pg_switch_wal()")
        with standby.connect(name) as conn:
            _wait(
                lambda: conn.execute(
                    "SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = %s",
                    (name,),
                ).fetchone()[0],
                "the standby cancels the dump",
            )
        os.kill(pg_dump, signal.SIGCONT)
        _, stderr = job.communicate(timeout=120)
    finally:
        blocker.close()
        if second is not None:
            second.close()
        if job is not None and job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 3, stderr
    assert "conflict with recovery" in stderr, stderr
    assert "max_standby_streaming_delay" in stderr and "hot_standby_feedback" in stderr
    assert manifests(tmp_path / "backups") == []


def test_a_run_on_the_standby_is_skipped_while_a_run_on_the_primary_holds_the_job(
    primary, standby, database, tmp_path
):
    """Two pods of one job, one pointed at the primary, one at its standby: the same data to
    the same destinations. The standby's run takes the job's lock on the primary: skipped."""
    blocker = primary.connect(database, autocommit=False)
    job = None
    try:
        blocker.execute("LOCK TABLE shop.customers IN ACCESS EXCLUSIVE MODE")
        on_primary = _env(primary, database, tmp_path)
        job = subprocess.Popen(
            [sys.executable, str(REPO / "entrypoint.py"), "backup"],
            env={**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **on_primary},
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_pg_dump(primary, database, "wait_event_type = 'Lock'", "waited for the lock")
        other_pod = tmp_path / "other-pod"
        other_pod.mkdir()
        on_standby = {**_env(standby, database, tmp_path), "BACKUP_LOCK_DIR": str(other_pod)}
        skipped = run_job("backup", env=on_standby)
        blocker.rollback()
        output, _ = job.communicate(timeout=120)
    finally:
        blocker.close()
        if job is not None and job.poll() is None:
            job.kill()
            job.wait()
    assert skipped.returncode == 7, skipped.output
    assert f"{primary.host}:{primary.port}" in skipped.stderr
    assert job.returncode == 0, output
    assert len(manifests(tmp_path / "backups")) == 1


def test_a_role_that_cannot_see_the_primary_keeps_the_lock_on_the_standby(
    primary, standby, tmp_path
):
    """Without pg_read_all_stats the standby does not say where it streams from: the lock is
    held on the standby, with a warning; the replay state is still known (the receiver's pid
    is visible to every role), so a caught-up standby is not taken for a stale one, however old
    its last replayed transaction."""
    database = unique_name("plain")
    primary.create_database(database)
    primary.execute(database, "CREATE TABLE t AS SELECT generate_series(1, 100) AS n")
    role = f"reader_{database}"
    primary.execute(
        "postgres", f"CREATE ROLE {role} LOGIN PASSWORD 'r34der-pass' IN ROLE pg_read_all_data"
    )
    standby.catch_up()
    # Nothing to replay for a while: the last replayed transaction grows old, the data does not.
    with standby.connect() as conn:
        _wait(
            lambda: conn.execute(
                "SELECT now() - pg_last_xact_replay_timestamp() > interval '2 s'"
            ).fetchone()[0],
            "the last replayed transaction is 2 s old",
        )
    env = {
        **_env(standby, database, tmp_path, BACKUP_STANDBY_MAX_LAG="1s"),
        "PGUSER": role,
        "PGPASSWORD": "r34der-pass",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "held on the standby" in result.stderr
    [record] = manifests(tmp_path / "backups")
    assert record["source"]["standby"] is True
    assert record["source"]["replay_lag_s"] == 0


def test_a_directory_backup_from_a_standby_says_so_and_restores(
    primary, standby, database, tmp_path
):
    env = _env(
        standby,
        database,
        tmp_path,
        BACKUP_FORMAT="directory",
        BACKUP_JOBS="2",
        BACKUP_ROW_COUNTS="exact",
        BACKUP_VERIFY="restore",
        VERIFY_DATABASE_URL=primary.url(),
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    [record] = manifests(tmp_path / "backups")
    assert record["format"] == "directory"
    assert record["source"]["standby"] is True and record["source"]["replay_timestamp"]


def test_a_lock_held_by_replay_is_named_as_the_primarys(primary, standby, database, tmp_path):
    """pg_dump on the standby waits behind a lock the standby replays for a transaction on the
    primary: the hint says so, not "session N (no application name)"."""
    blocker = primary.connect(database, autocommit=False)
    try:
        blocker.execute("LOCK TABLE shop.customers IN ACCESS EXCLUSIVE MODE")
        primary.execute("postgres", "SELECT pg_switch_wal()")
        with standby.connect(database) as conn:
            _wait(
                lambda: conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'shop.customers'::regclass "
                    "AND mode = 'AccessExclusiveLock'"
                ).fetchone()[0],
                "the standby replays the lock",
            )
        env = _env(standby, database, tmp_path, BACKUP_LOCK_WAIT_TIMEOUT="3s")
        result = run_job("backup", env=env)
    finally:
        blocker.close()
    assert result.returncode == 3, result.output
    assert "WAL replay" in result.stderr and "on the primary" in result.stderr
    assert "shop.customers" in result.stderr
    assert manifests(tmp_path / "backups") == []


@pytest.mark.parametrize("major", [17, 18])
def test_a_backup_from_a_standby_of_a_newer_major(major, tmp_path):
    bindir = find_bindir(major)
    if bindir is None:
        pytest.fail(f"PostgreSQL {major} not installed: run 'make test'", pytrace=False)
    primary = Cluster(bindir).start()
    try:
        replica = Standby(primary).start()
        try:
            primary.create_database("shop")
            primary.load_sample("shop")
            replica.catch_up()
            env = _env(
                replica,
                "shop",
                tmp_path,
                BACKUP_PG_BIN_DIRS=str(client_bindir(major)),
                BACKUP_ROW_COUNTS="exact",
                BACKUP_VERIFY="restore",
                VERIFY_DATABASE_URL=primary.url(),
            )
            checked = run_job("check", env=env)
            result = run_job("backup", env=env)
        finally:
            replica.stop()
    finally:
        primary.stop()
    assert checked.returncode == 0, checked.output
    assert "hot standby" in checked.stdout
    assert result.returncode == 0, result.output
    [record] = manifests(tmp_path / "backups")
    assert record["server_version"].startswith(f"{major}.")
    assert record["source"]["standby"] is True and record["source"]["replay_lag_s"] < 60
