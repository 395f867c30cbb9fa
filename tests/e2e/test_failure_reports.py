"""Failures nobody hears about: every command that runs unattended (backup, verify, prune,
status) tells its failure through every configured channel, with its name in the message; a
configuration error is told through the channels that could still be read.

Telegram, the webhook and the healthchecks pings go to a local recording HTTP server; metrics to
a textfile and a real Pushgateway; the job runs as a subprocess, as users run it."""

from __future__ import annotations

import fcntl
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from backup.config import load
from backup.job.lock import local_lock_path
from tests.conftest import run_job
from tests.fixtures import http as http_fixtures
from tests.fixtures import pushgateway as pushgateway_fixtures
from tests.fixtures.http import RecordingServer

recording_server = http_fixtures.recording_server
pushgateway = pushgateway_fixtures.pushgateway

TOKEN = http_fixtures.TELEGRAM_TOKEN
HOOK, PING = http_fixtures.WEBHOOK_PATH, http_fixtures.PING_PATH

_channels = http_fixtures.channel_env


def _offline_env(tmp_path: Path, server: RecordingServer, **extra: str) -> dict[str, str]:
    """A job whose commands need no database server (status, prune, a refused configuration)."""
    backups = tmp_path / "backups"
    backups.mkdir(exist_ok=True)
    return {
        "PGHOST": "127.0.0.1",
        "PGPORT": "1",
        "PGUSER": "backup",
        "PGDATABASE": "shop",
        "BACKUP_DESTINATIONS": f"file://{backups}",
        "BACKUP_LOCK_DIR": str(tmp_path),
        **_channels(server),
        **extra,
    }


def _telegram(server: RecordingServer) -> list[str]:
    return [r.json()["text"] for r in server.requests_to(f"/bot{TOKEN}/sendMessage")]


def _hooks(server: RecordingServer) -> list[dict]:
    return [r.json() for r in server.requests_to(HOOK)]


def _damage(backup_dir: Path) -> None:
    [dump] = list(backup_dir.rglob("*.dump.zst"))
    data = dump.read_bytes()
    middle = len(data) // 2
    dump.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])


def _samples(path: Path) -> dict[tuple[str, str], float]:
    """(metric name, command label) -> value, from a textfile."""
    return {
        (sample.name, sample.labels.get("command", "")): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def test_a_failing_verify_is_told_everywhere_with_its_name(
    job_env, backup_dir, recording_server, tmp_path, sample_db
):
    metrics_file = tmp_path / "pgbackup.prom"
    env = {**job_env, **_channels(recording_server), "METRICS_FILE": str(metrics_file)}
    assert run_job("backup", env=env).returncode == 0
    backup_metrics = metrics_file.read_text()
    [state] = list(backup_dir.rglob("status-*.json"))  # the job's own history (issue 19 item 13)
    history_before = state.read_bytes()
    ok = run_job("verify", env=env)
    assert ok.returncode == 0, ok.output
    # A verify that passes is told (its result is news), but is no heartbeat: no success ping.
    told = _telegram(recording_server)
    assert len(told) == 2 and "PostgreSQL verify succeeded" in told[1]
    assert _hooks(recording_server)[-1]["command"] == "verify"
    assert _hooks(recording_server)[-1]["event"] == "success"
    assert recording_server.paths().count(PING) == 1  # the backup's
    passed = _samples(tmp_path / "pgbackup.verify.prom")
    assert passed[("pgbackup_command_last_run_success", "verify")] == 1
    recording_server.requests.clear()

    _damage(backup_dir)
    result = run_job("verify", "--restore-test", env=env)
    assert result.returncode == 5, result.output

    [message] = _telegram(recording_server)
    assert "PostgreSQL verify failed" in message
    assert "zstd stream is damaged" in message and sample_db in message  # the backup's name
    assert "pgbackup verify --restore-test" in message
    [hook] = _hooks(recording_server)
    assert hook["command"] == "verify" and hook["status"] == "failure"
    assert hook["exit_code"] == 5 and hook["error"]
    # The failure pings the backup's check; no /start and no success ping from verify.
    assert recording_server.paths().count(f"{PING}/fail") == 1
    assert PING not in recording_server.paths()
    assert f"{PING}/start" not in recording_server.paths()
    [ping] = recording_server.requests_to(f"{PING}/fail")
    assert ping.text.startswith("pgbackup verify failure (exit 5)")
    for secret in (TOKEN, "secret-webhook-path", "secret-check-uuid"):
        assert secret not in result.output

    # The run history counts backups only; the backup's own metrics file is left alone.
    assert state.read_bytes() == history_before
    assert metrics_file.read_text() == backup_metrics
    verify_metrics = _samples(tmp_path / "pgbackup.verify.prom")
    assert verify_metrics[("pgbackup_command_last_run_success", "verify")] == 0
    assert verify_metrics[("pgbackup_command_exit_code", "verify")] == 5
    backup_command = _samples(tmp_path / "pgbackup.backup.prom")
    assert backup_command[("pgbackup_command_last_run_success", "backup")] == 1


def test_a_failing_backup_is_told_once(job_env, recording_server, tmp_path):
    """The backup command tells its own failure (with its history); cli adds no second one."""
    env = {**job_env, **_channels(recording_server), "PGPASSWORD": "wrong-Pass-1"}
    result = run_job("backup", env=env)
    assert result.returncode == 3, result.output
    assert len(_telegram(recording_server)) == 1
    assert len(_hooks(recording_server)) == 1
    assert len(recording_server.requests_to(f"{PING}/fail")) == 1


def test_a_failing_prune_is_told(recording_server, tmp_path):
    env = _offline_env(
        tmp_path,
        recording_server,
        BACKUP_DESTINATIONS="s3://bucket/x",
        S3_ENDPOINT_URL="http://127.0.0.1:1",
        AWS_ACCESS_KEY_ID="AK",
        AWS_SECRET_ACCESS_KEY="SK-very-secret",
        AWS_REGION="us-east-1",
        BACKUP_RETRY_ATTEMPTS="1",
    )
    result = run_job("prune", env=env)
    assert result.returncode == 4, result.output
    [message] = _telegram(recording_server)
    assert "PostgreSQL prune failed" in message and "s3://bucket/x" in message
    [hook] = _hooks(recording_server)
    assert hook["command"] == "prune" and hook["exit_code"] == 4
    assert recording_server.requests_to(f"{PING}/fail")
    assert "SK-very-secret" not in result.output + str(hook)


def test_a_backup_failing_before_it_starts_is_told(recording_server, tmp_path):
    env = _offline_env(tmp_path, recording_server, BACKUP_LOCK_DIR=str(tmp_path / "missing"))
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    [message] = _telegram(recording_server)
    assert "PostgreSQL backup failed" in message and "BACKUP_LOCK_DIR" in message
    [hook] = _hooks(recording_server)
    assert hook["command"] == "backup" and hook["exit_code"] == 2
    assert recording_server.requests_to(f"{PING}/fail")


def test_a_stale_status_is_told(recording_server, tmp_path):
    result = run_job("status", env=_offline_env(tmp_path, recording_server))
    assert result.returncode == 1, result.output
    [message] = _telegram(recording_server)
    assert "PostgreSQL status failed" in message and "shop" in message
    [hook] = _hooks(recording_server)
    assert hook["command"] == "status" and hook["exit_code"] == 1
    [ping] = recording_server.requests_to(f"{PING}/fail")
    assert ping.text.startswith("pgbackup status failure (exit 1)")


def test_a_configuration_error_is_told_through_the_channels_that_work(recording_server, tmp_path):
    metrics_file = tmp_path / "pgbackup.prom"
    env = _offline_env(
        tmp_path,
        recording_server,
        BACKUP_COMPRESSION="lz4",
        BACKUP_RETENTION_DAYS="thirty",
        PGPASSWORD="Hunter2-secret",
        # A mistyped second webhook: the first one still gets the report.
        NOTIFY_WEBHOOK_URL=f"{recording_server.url}{HOOK},ftp://example.invalid/x",
        METRICS_FILE=str(metrics_file),
        # A problem that quotes a secret: the value is redacted everywhere.
        PGPORT="Hunter2-secret",
    )
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    assert "error:" in result.stderr and "BACKUP_COMPRESSION" in result.stderr
    [message] = _telegram(recording_server)
    assert "PostgreSQL backup failed" in message
    for variable in ("BACKUP_COMPRESSION", "BACKUP_RETENTION_DAYS", "NOTIFY_WEBHOOK_URL"):
        assert variable in message
    [hook] = _hooks(recording_server)
    assert hook["command"] == "backup" and hook["exit_code"] == 2
    [ping] = recording_server.requests_to(f"{PING}/fail")
    assert ping.text.startswith("pgbackup backup failure (exit 2)")
    everything = result.output + message + str(hook) + ping.text
    assert "Hunter2-secret" not in everything and TOKEN not in everything
    assert not metrics_file.exists()  # the backup's series are not replaced by nothing
    command_metrics = _samples(tmp_path / "pgbackup.backup.prom")
    assert command_metrics[("pgbackup_command_exit_code", "backup")] == 2


def test_a_configuration_error_reaches_the_pushgateway(recording_server, pushgateway, tmp_path):
    env = _offline_env(
        tmp_path,
        recording_server,
        BACKUP_COMPRESSION="lz4",
        PROMETHEUS_PUSHGATEWAY_URL=pushgateway.url,
    )
    assert run_job("verify", env=env).returncode == 2
    pushed = [
        sample
        for family in text_string_to_metric_families(pushgateway.metrics_text())
        for sample in family.samples
        if sample.name == "pgbackup_command_exit_code"
    ]
    [sample] = pushed
    assert sample.value == 2 and sample.labels["command"] == "verify"
    assert sample.labels["instance"] == "127.0.0.1:1"


def test_interactive_commands_and_usage_errors_stay_quiet(recording_server, tmp_path):
    env = _offline_env(tmp_path, recording_server, BACKUP_COMPRESSION="lz4")
    assert run_job("list", env=env).returncode == 2
    assert run_job("verify", "--no-such-flag", env=env).returncode == 2
    assert recording_server.requests == []


def test_a_skipped_backup_is_not_a_failure(recording_server, tmp_path):
    env = _offline_env(tmp_path, recording_server)
    # Hold the job's lock as a running copy on this machine would.
    with open(local_lock_path(load(env)), "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_job("backup", env=env)
    assert result.returncode == 7, result.output
    assert recording_server.requests == []


def test_failing_channels_never_change_the_exit_code(recording_server, tmp_path):
    for path in (f"/bot{TOKEN}/sendMessage", HOOK, f"{PING}/fail"):
        recording_server.respond(path, status=400, body={"ok": False, "description": "no"})
    # The metrics write fails too (status writes pgbackup.status.prom: here a directory); the
    # configuration itself is valid (METRICS_FILE names a file in a directory that exists).
    metrics_dir = tmp_path / "metrics"
    (metrics_dir / "pgbackup.status.prom").mkdir(parents=True)
    env = _offline_env(tmp_path, recording_server, METRICS_FILE=str(metrics_dir / "pgbackup.prom"))
    result = run_job("status", env=env)
    assert result.returncode == 1, result.output
    assert "notifications sent: 0, failed: 3" in result.stderr
    assert "Traceback" not in result.output


def test_a_configuration_error_is_told_in_the_configured_language(recording_server, tmp_path):
    env = _offline_env(
        tmp_path,
        recording_server,
        BACKUP_COMPRESSION="lz4",
        NOTIFY_LANGUAGE="fr",
        NOTIFY_TIMEZONE="Europe/Paris",
    )
    assert run_job("backup", env=env).returncode == 2
    [message] = _telegram(recording_server)
    assert message.startswith("<b>❌ Backup PostgreSQL Échoué</b>")
    assert "BACKUP_COMPRESSION" in message and "Commande manuelle :" in message
    assert " CET" in message or " CEST" in message
    recording_server.requests.clear()

    # A language that is itself refused: told in English, naming it.
    env["NOTIFY_LANGUAGE"] = "de"
    result = run_job("backup", env=env)
    assert result.returncode == 2 and "NOTIFY_LANGUAGE" in result.stderr
    [message] = _telegram(recording_server)
    assert message.startswith("<b>❌ PostgreSQL backup failed</b>") and "NOTIFY_LANGUAGE" in message
