"""The failure report of a command: what it says, and what it never says."""

from __future__ import annotations

from datetime import UTC, datetime

from backup import log as log_module
from backup.commands import reporting
from backup.config import load
from backup.errors import ConfigError, IntegrityError
from backup.job.outcome import VerifyOutcome

START = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)


def test_a_command_report_names_the_command_every_problem_and_no_secret() -> None:
    log_module.setup(secrets=["Hunter2-secret"])
    try:
        error = ConfigError(
            ["PGPORT='Hunter2-secret' is not a port number", "BACKUP_COMPRESSION='x'"]
        )
        report = reporting.command_report(
            "verify",
            START,
            error,
            host="db:Hunter2-secret",
            manual_command="python entrypoint.py verify --destination s3://me:pw-in-url@minio/b",
        )
        assert (report.command, report.status, report.exit_code) == ("verify", "failure", 2)
        assert report.error == "PGPORT='***' is not a port number; BACKUP_COMPRESSION='x'"
        assert report.host == "db:***"
        assert "pw-in-url" not in report.manual_command
    finally:
        log_module.setup()


def test_a_success_report_is_a_success() -> None:
    report = reporting.command_report("prune", START, None, host="db:5432", manual_command="x")
    assert (report.status, report.exit_code, report.error) == ("success", 0, None)


def test_an_error_told_by_the_backup_is_not_told_again() -> None:
    error = IntegrityError("damaged")
    assert not reporting.told(error)
    reporting._mark_told(error)
    assert reporting.told(error)


def test_a_recorded_verify_reaches_its_own_report_only(tmp_path) -> None:
    """What the verify command recorded goes into that run's report (its metrics say so), and
    not into a later command's."""
    metrics_file = tmp_path / "pgbackup.prom"
    config = load(
        {
            "PGHOST": "127.0.0.1",
            "PGDATABASE": "shop",
            "BACKUP_DESTINATIONS": f"file://{tmp_path}",
            "METRICS_FILE": str(metrics_file),
        }
    )
    reporting.record_verify(
        VerifyOutcome(
            name="shop-20251110T030000Z",
            database="shop",
            destination=f"file://{tmp_path}",
            size_bytes=100,
            tables=0,
            restore_test=True,
        )
    )
    damaged = IntegrityError("shop-20251110T030000Z: sha256 mismatch")
    reporting.tell_outcome(config, "verify", START, damaged, "python entrypoint.py verify")
    verify_file = (tmp_path / "pgbackup.verify.prom").read_text()
    assert (
        f'pgbackup_last_verify_success{{database="shop",destination="file://{tmp_path}"}} 0.0'
        in verify_file
    )
    reporting.tell_outcome(config, "prune", START, None, "python entrypoint.py prune")
    assert "pgbackup_last_verify" not in (tmp_path / "pgbackup.prune.prom").read_text()
