"""BACKUP_STANDBY_PAUSE_REPLAY (issue 23): a real primary and a streaming standby (pg_basebackup
-R), PostgreSQL 15 and 17, with max_standby_streaming_delay=100ms. A recovery conflict is
provoked while the dump reads: rows deleted and vacuumed on the primary. Without the option the
run fails (exit 3) with a hint naming both ways out; with it the backup succeeds and restores
identical, and replay runs again after every ending: success, failure, SIGTERM, BACKUP_TIMEOUT,
SIGKILL followed by the next run. A pause made by hand is never resumed by the job.

The dump is held without timing: pg_dump runs behind a gate (a wrapper that does not read its
output until a file exists), so its backend blocks writing (``ClientWrite``) in the middle of
``COPY``, its snapshot open, until the test opens the gate.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_environ, run_job
from tests.e2e.helpers import manifests, wait_for_pg_dump
from tests.fixtures.pgcluster import Cluster, client_bindir, find_bindir
from tests.fixtures.standby import Standby

DATABASE = "big"
CONFLICT_WAIT = "recovery conflict on snapshot"
_victims = itertools.count(1)


@dataclass
class Pair:
    major: int
    primary: Cluster
    standby: Standby


@pytest.fixture(scope="module", params=[15, 17])
def pair(request):
    major = request.param
    bindir = find_bindir(major)
    if bindir is None:
        pytest.fail(f"PostgreSQL {major} not installed: run 'make test'", pytrace=False)
    primary = Cluster(bindir).start()
    standby = None
    try:
        settings = {
            "max_standby_streaming_delay": "100ms",
            "max_standby_archive_delay": "100ms",
            # "recovery still waiting after ...: recovery conflict on snapshot" in its log.
            "log_recovery_conflict_waits": "on",
            "deadlock_timeout": "50ms",
        }
        standby = Standby(primary, settings).start()
        primary.create_database(DATABASE)
        # ~10 MB of rows: more than a pipe and both socket buffers (the server's send buffer
        # grows to 4 MiB on loopback), so a gated pg_dump blocks in the middle of COPY.
        primary.execute(
            DATABASE,
            "CREATE TABLE t AS SELECT g AS id, repeat(md5(g::text), 7) AS pad "
            "FROM generate_series(1, 45000) AS g",
        )
        standby.catch_up()
        yield Pair(major, primary, standby)
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()


# Tests of an ending that does not depend on the major: on PostgreSQL 15 only (suite time).
ON_15 = pytest.mark.parametrize("pair", [15], indirect=True)


def _victim(pair: Pair) -> str:
    """A table of 1,000 rows the primary will delete and vacuum while the dump reads."""
    name = f"victim_{os.getpid()}_{next(_victims)}"
    pair.primary.execute(
        DATABASE, f"CREATE TABLE {name} AS SELECT g AS n FROM generate_series(1, 1000) AS g"
    )
    pair.standby.catch_up()
    return name


def _gated_bin(tmp_path: Path, major: int) -> tuple[Path, Path]:
    """A BACKUP_PG_BIN_DIRS whose pg_dump's output waits for the gate file; the real tools
    otherwise. The real pg_dump dies with the wrapper (PR_SET_PDEATHSIG)."""
    real = client_bindir(major)
    assert real is not None
    directory, gate = tmp_path / "bin", tmp_path / "gate"
    directory.mkdir()
    for tool in real.iterdir():
        if tool.name != "pg_dump":
            (directory / tool.name).symlink_to(tool)
    script = directory / "pg_dump"
    script.write_text(
        f"#!{sys.executable}\n"
        "import ctypes, os, shutil, signal, subprocess, sys, time\n"
        f"REAL, GATE = {str(real / 'pg_dump')!r}, {str(gate)!r}\n"
        "args = sys.argv[1:]\n"
        "if not args or args[0] in ('--version', '-V'):\n"
        "    os.execv(REAL, [REAL, *args])\n"
        "def orphan_dies():\n"
        "    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"
        "child = subprocess.Popen([REAL, *args], stdout=subprocess.PIPE, preexec_fn=orphan_dies)\n"
        "while not os.path.exists(GATE):\n"
        "    time.sleep(0.02)\n"
        "shutil.copyfileobj(child.stdout, sys.stdout.buffer, 1 << 20)\n"
        "sys.stdout.flush()\n"
        "sys.exit(child.wait())\n"
    )
    script.chmod(0o755)
    return directory, gate


def _env(pair: Pair, tmp_path: Path, **extra: str) -> dict[str, str]:
    backups = tmp_path / "backups"
    backups.mkdir(exist_ok=True)
    bindir, _ = (
        (tmp_path / "bin", None)
        if (tmp_path / "bin").exists()
        else _gated_bin(tmp_path, pair.major)
    )
    return pair.standby.env(
        DATABASE,
        BACKUP_DESTINATIONS=f"file://{backups}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_PG_BIN_DIRS=str(bindir),
        **extra,
    )


def _open_gate(tmp_path: Path) -> None:
    (tmp_path / "gate").touch()


@contextlib.contextmanager
def _job(env: dict[str, str]):
    job = subprocess.Popen(
        [sys.executable, str(REPO / "entrypoint.py"), "backup"],
        env={**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **env},
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield job
    finally:
        if job.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)
            job.communicate()


def _blocked(standby: Standby) -> int:
    """pg_dump's backend, once it blocks writing table data to the gated pg_dump."""
    return wait_for_pg_dump(standby, DATABASE, "wait_event = 'ClientWrite'", "blocked writing")


def _paused(standby: Standby) -> bool:
    with standby.connect() as conn:
        return bool(conn.execute("SELECT pg_is_wal_replay_paused()").fetchone()[0])


def _wait(predicate, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


def _delete_and_vacuum(pair: Pair, victim: str) -> str:
    """Delete the victim's rows on the primary and vacuum them away; the standby receives it.
    Returns the primary's WAL position after it."""
    pair.primary.execute(DATABASE, f"DELETE FROM {victim}")
    pair.primary.execute(DATABASE, f"VACUUM {victim}")
    with pair.primary.connect() as conn:
        target = str(conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0])
    with pair.standby.connect() as conn:
        _wait(
            lambda: conn.execute(
                "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (target,)
            ).fetchone()[0],
            "the standby receives the vacuum",
        )
    return target


def _log_text(standby: Standby) -> str:
    return Path(standby.log).read_text(errors="replace")


def _replayed(standby: Standby, target: str) -> bool:
    with standby.connect() as conn:
        return bool(
            conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]
        )


def _assert_replay_runs(pair: Pair) -> None:
    assert not _paused(pair.standby), "replay left paused"
    pair.standby.catch_up(timeout_s=30)


def test_without_the_option_a_conflict_cancels_the_dump_naming_both_ways_out(pair, tmp_path):
    victim = _victim(pair)
    env = _env(pair, tmp_path)
    waits_before = _log_text(pair.standby).count(CONFLICT_WAIT)
    with _job(env) as job:
        _blocked(pair.standby)
        _delete_and_vacuum(pair, victim)
        # Replay waits on the dump's snapshot (the standby logs it after deadlock_timeout);
        # past 100 ms it cancels the dump, which notices as soon as it can write again.
        _wait(
            lambda: _log_text(pair.standby).count(CONFLICT_WAIT) > waits_before,
            "replay waits on the dump's snapshot",
        )
        _open_gate(tmp_path)
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 3, stderr
    assert "conflict with recovery" in stderr, stderr
    assert "BACKUP_STANDBY_PAUSE_REPLAY=true" in stderr
    assert "hot_standby_feedback" in stderr and "max_standby_streaming_delay" in stderr
    assert manifests(tmp_path / "backups") == []
    _assert_replay_runs(pair)


def test_with_the_option_the_dump_outlives_the_conflict_and_restores_identical(pair, tmp_path):
    victim = _victim(pair)
    env = _env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true", BACKUP_ROW_COUNTS="exact")
    with _job(env) as job:
        _blocked(pair.standby)
        assert _paused(pair.standby)
        target = _delete_and_vacuum(pair, victim)
        assert not _replayed(pair.standby, target)  # held back by the pause, not yet applied
        _open_gate(tmp_path)
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 0, stderr
    assert "replay paused" in stderr and "replay resumed" in stderr
    [record] = manifests(tmp_path / "backups")
    assert record["row_counts"]["tables"][f"public.{victim}"] == 1000
    _assert_replay_runs(pair)
    with pair.standby.connect(DATABASE) as conn:  # the standby applied the deletion since
        assert conn.execute(f"SELECT count(*) FROM {victim}").fetchone()[0] == 0
    # Restored on the primary: the rows as the dump's snapshot saw them.
    target_db = f"restored_{victim}"
    restore_env = {
        **pair.primary.env(DATABASE),
        "BACKUP_DESTINATIONS": env["BACKUP_DESTINATIONS"],
        "BACKUP_PG_BIN_DIRS": str(client_bindir(pair.major)),
    }
    restored = run_job("restore", "latest", "--target-db", target_db, "--force", env=restore_env)
    assert restored.returncode == 0, restored.output
    digest = "SELECT count(*), md5(string_agg(pad, '' ORDER BY id)) FROM t"
    with pair.primary.connect(target_db) as conn:
        assert conn.execute(f"SELECT count(*) FROM {victim}").fetchone()[0] == 1000
        restored_t = conn.execute(digest).fetchone()
    with pair.primary.connect(DATABASE) as conn:
        assert restored_t == conn.execute(digest).fetchone()


def test_replay_resumes_when_the_dump_fails(pair, tmp_path):
    env = _env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true")
    with _job(env) as job:
        backend = _blocked(pair.standby)
        assert _paused(pair.standby)
        with pair.standby.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
        _open_gate(tmp_path)
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 3, stderr
    assert manifests(tmp_path / "backups") == []
    _assert_replay_runs(pair)


def test_replay_resumes_on_sigterm(pair, tmp_path):
    env = _env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true")
    with _job(env) as job:
        _blocked(pair.standby)
        assert _paused(pair.standby)
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    _assert_replay_runs(pair)


@ON_15
def test_replay_resumes_when_backup_timeout_stops_the_run(pair, tmp_path):
    env = _env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true", BACKUP_TIMEOUT="6s")
    with _job(env) as job:
        _blocked(pair.standby)
        assert _paused(pair.standby)
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 3, stderr
    assert "BACKUP_TIMEOUT" in stderr
    _assert_replay_runs(pair)


def test_a_pause_left_by_a_killed_run_is_resumed_by_the_next_run(pair, tmp_path):
    env = _env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true")
    try:
        with _job(env) as job:
            _blocked(pair.standby)
            assert _paused(pair.standby)
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate(timeout=60)
        assert _paused(pair.standby)  # nobody could resume it
        _open_gate(tmp_path)
        result = run_job("backup", env=env)
        assert result.returncode == 0, result.output
        assert "left paused" in result.stderr and "resumed" in result.stderr
        assert len(manifests(tmp_path / "backups")) == 1
        _assert_replay_runs(pair)
    finally:
        pair.standby.resume_replay()


@ON_15
def test_a_pause_made_by_hand_is_used_and_left_as_it_was(pair, tmp_path):
    pair.standby.pause_replay()
    try:
        _open_gate_first = _env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true")
        _open_gate(tmp_path)
        result = run_job("backup", env=_open_gate_first)
        assert result.returncode == 0, result.output
        assert "not by this job" in result.stderr
        assert _paused(pair.standby)
    finally:
        pair.standby.resume_replay()
    _assert_replay_runs(pair)


@ON_15
def test_a_directory_backup_pauses_and_resumes(pair, tmp_path):
    env = _env(
        pair,
        tmp_path,
        BACKUP_STANDBY_PAUSE_REPLAY="true",
        BACKUP_FORMAT="directory",
        BACKUP_JOBS="2",
    )
    _open_gate(tmp_path)
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "replay paused" in result.stderr and "replay resumed" in result.stderr
    _assert_replay_runs(pair)


def test_check_reports_the_standby_settings_and_the_rights(pair, tmp_path):
    env = _env(pair, tmp_path)
    checked = run_job("check", env=env)
    assert checked.returncode == 0, checked.output
    assert "max_standby_streaming_delay=100ms" in checked.stdout
    assert "hot_standby_feedback=off" in checked.stdout
    assert "BACKUP_STANDBY_PAUSE_REPLAY=true" in checked.stdout  # what to do
    checked = run_job("check", env={**env, "BACKUP_STANDBY_PAUSE_REPLAY": "true"})
    assert checked.returncode == 0, checked.output
    assert "replay is paused for each dump" in checked.stdout


@ON_15
def test_a_role_that_may_not_pause_replay_is_refused_before_any_dump(pair, tmp_path):
    role = f"reader_{os.getpid()}_{next(_victims)}"
    pair.primary.execute(
        "postgres", f"CREATE ROLE {role} LOGIN PASSWORD 'r34der-pass' IN ROLE pg_read_all_data"
    )
    pair.standby.catch_up()
    env = {
        **_env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true"),
        "PGUSER": role,
        "PGPASSWORD": "r34der-pass",
    }
    checked = run_job("check", env=env)
    assert checked.returncode == 2, checked.output
    assert "pg_wal_replay_pause" in checked.output and "GRANT EXECUTE" in checked.output
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    assert "BACKUP_STANDBY_PAUSE_REPLAY" in result.stderr and "GRANT EXECUTE" in result.stderr
    assert manifests(tmp_path / "backups") == []
    pair.primary.execute(
        "postgres",
        f"GRANT EXECUTE ON FUNCTION pg_wal_replay_pause(), pg_wal_replay_resume() TO {role}",
    )
    pair.standby.catch_up()
    _open_gate(tmp_path)
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    _assert_replay_runs(pair)


@ON_15
def test_two_runs_share_the_pause_and_the_last_one_out_resumes(pair, tmp_path):
    """Two jobs dump from one standby at once (another destination, another lock): the one that
    ends first leaves replay paused for the other's dump; the last one resumes it."""
    env = _env(pair, tmp_path, BACKUP_STANDBY_PAUSE_REPLAY="true")
    other = tmp_path / "other"
    (other / "backups").mkdir(parents=True)
    other_env = {
        **env,
        "BACKUP_DESTINATIONS": f"file://{other / 'backups'}",
        "BACKUP_LOCK_DIR": str(other),
        "BACKUP_PG_BIN_DIRS": str(client_bindir(pair.major)),  # not gated
    }
    with _job(env) as job:
        _blocked(pair.standby)
        assert _paused(pair.standby)
        second = run_job("backup", env=other_env)
        assert second.returncode == 0, second.output
        assert "stays paused on the standby for another run's dump" in second.stderr, second.stderr
        assert _paused(pair.standby)  # the first run's dump still needs it
        _open_gate(tmp_path)
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 0, stderr
    assert "replay resumed" in stderr
    _assert_replay_runs(pair)
