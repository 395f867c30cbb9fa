"""Behind PgBouncer (issue 19): a real pgbouncer in front of a real cluster. A pool per
transaction or per statement shares server sessions between clients, so the job's lock and
pg_dump's session settings would land on sessions it does not own: refused, exit 2, before
anything runs. A pool in session mode backs up and restores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_job
from tests.e2e.helpers import manifests
from tests.fixtures.standby import PgBouncer


@pytest.fixture(scope="module")
def bouncers(pg15):
    started: dict[str, PgBouncer] = {}
    yield lambda mode: started.get(mode) or started.setdefault(mode, PgBouncer(pg15, mode).start())
    for bouncer in started.values():
        bouncer.stop()


def _env(bouncer: PgBouncer, database: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    backups = tmp_path / "backups"
    backups.mkdir(exist_ok=True)
    return bouncer.env(
        database, BACKUP_DESTINATIONS=f"file://{backups}", BACKUP_LOCK_DIR=str(tmp_path), **extra
    )


@pytest.mark.parametrize("mode", ["transaction", "statement"])
@pytest.mark.parametrize("command", ["backup", "check"])
def test_a_pool_per_transaction_is_refused(bouncers, sample_db, tmp_path, mode, command):
    result = run_job(command, env=_env(bouncers(mode), sample_db, tmp_path))
    assert result.returncode == 2, result.output
    assert "pooler" in result.stderr and "session mode" in result.stderr
    assert "PGHOST/PGPORT" in result.stderr
    assert "Traceback" not in result.output
    assert manifests(tmp_path / "backups") == []


@pytest.mark.parametrize(
    "args",
    [
        ("restore", "latest", "--target-db", "pooled_copy", "--force"),
        ("restore", "latest", "--table", "shop.customers", "--target-db", "pooled_t", "--force"),
        ("verify", "--restore-test"),
    ],
    ids=["restore", "restore-table", "verify-restore-test"],
)
def test_restore_and_the_test_restore_refuse_a_pool_per_transaction(
    pg15, bouncers, sample_db, tmp_path, args
):
    """pg_restore's session settings through a pool per transaction would land on server
    sessions other clients share: refused before anything is created (exit 2)."""
    direct = _env(bouncers("transaction"), sample_db, tmp_path)
    direct.update({"PGHOST": "127.0.0.1", "PGPORT": str(pg15.port)})
    assert run_job("backup", env=direct).returncode == 0
    result = run_job(*args, env=_env(bouncers("transaction"), sample_db, tmp_path))
    assert result.returncode == 2, result.output
    assert "pooler" in result.stderr and "PGHOST/PGPORT" in result.stderr
    assert "Traceback" not in result.output
    with pg15.connect() as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert not [n for n in names if n.startswith(("pooled_", "pgbackup_verify_"))]


def test_a_pool_in_session_mode_backs_up_and_restores(pg15, bouncers, sample_db, tmp_path):
    bouncer = bouncers("session")
    env = _env(
        bouncer,
        sample_db,
        tmp_path,
        BACKUP_ROW_COUNTS="exact",
        BACKUP_VERIFY="restore",
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "session mode" in result.output
    [record] = manifests(tmp_path / "backups")
    assert record["row_counts"]["mode"] == "exact"
    target = f"{sample_db}_copy"
    restored = run_job("restore", "latest", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    with pg15.connect(target) as conn:
        rows = conn.execute("SELECT count(*) FROM shop.customers").fetchone()[0]
    assert rows == record["row_counts"]["tables"]["shop.customers"]
    pg15.execute("postgres", f'DROP DATABASE "{target}" WITH (FORCE)')


def test_a_session_pool_for_the_jobs_user_alone_passes(pg15, sample_db, tmp_path):
    """The docs' advice: ``[users] backup = pool_mode=session`` in a transaction-mode PgBouncer."""
    bouncer = PgBouncer(pg15, "transaction", user_pool_mode="session").start()
    try:
        result = run_job("check", env=_env(bouncer, sample_db, tmp_path))
    finally:
        bouncer.stop()
    assert result.returncode == 0, result.output
    assert "through a connection pooler in session mode" in result.stdout
