"""The failure report of a command: what it says, and what it never says."""

from __future__ import annotations

from datetime import UTC, datetime

from backup import log as log_module
from backup import reporting
from backup.errors import ConfigError, IntegrityError

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
