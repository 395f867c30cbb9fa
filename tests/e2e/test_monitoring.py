"""Notifications, history and metrics of real backup runs, through the CLI.

Telegram, the webhook and the pings go to a local recording HTTP server; metrics to a real
Prometheus Pushgateway and to a textfile."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import run_job
from tests.e2e.helpers import fake_pg_dump
from tests.fixtures import http as http_fixtures
from tests.fixtures import pushgateway as pushgateway_fixtures

recording_server = http_fixtures.recording_server
pushgateway = pushgateway_fixtures.pushgateway

TOKEN = "123456:ABCdefGhIJKlmnOPQrstUVwxyz0123456789"


def _env(job_env, server, **extra):
    return {
        **job_env,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "ADMIN_USER_ID": "4242",
        "TELEGRAM_API_URL": server.url,
        "NOTIFY_WEBHOOK_URL": f"{server.url}/hooks/secret-webhook-path",
        "HEALTHCHECK_URL": f"{server.url}/ping/secret-check-uuid",
        "NOTIFY_TIMEOUT_SECONDS": "2",
        **extra,
    }


def _telegram(server):
    return [r.json()["text"] for r in server.requests_to(f"/bot{TOKEN}/sendMessage")]


def test_success_and_failures_in_a_row_are_told(job_env, recording_server, tmp_path, sample_db):
    env = _env(job_env, recording_server)
    ok = run_job("backup", env=env)
    assert ok.returncode == 0, ok.output
    [message] = _telegram(recording_server)
    assert "succeeded" in message and sample_db.replace("_", "_") in message
    assert "Retention: 30 days" in message and "MB" in message
    paths = recording_server.paths()
    assert paths.index("/ping/secret-check-uuid/start") < paths.index("/ping/secret-check-uuid")
    [hook] = recording_server.requests_to("/hooks/secret-webhook-path")
    payload = hook.json()
    assert payload["status"] == "success" and payload["database"] == sample_db
    assert payload["size_bytes"] > 0 and payload["consecutive_failures"] == 0
    assert payload["text"]
    assert TOKEN not in ok.output and "secret-webhook-path" not in ok.output

    broken = fake_pg_dump(tmp_path / "bin", "echo 'pg_dump: error: boom' >&2; exit 1")
    failing = {**env, "BACKUP_PG_BIN_DIRS": str(broken)}
    for expected_in_a_row in (1, 2):
        result = run_job("backup", env=failing)
        assert result.returncode == 3
        hooks = recording_server.requests_to("/hooks/secret-webhook-path")
        assert hooks[-1].json()["status"] == "failure"
        assert hooks[-1].json()["consecutive_failures"] == expected_in_a_row
    messages = _telegram(recording_server)
    assert "failed" in messages[1] and "failure in a row" not in messages[1]
    assert "2nd failure in a row" in messages[2] and "No successful backup since" in messages[2]
    assert "pgbackup backup" in messages[2]
    assert recording_server.requests_to("/ping/secret-check-uuid/fail")

    status = run_job("status", "--json", env=env)
    rows = json.loads(status.stdout)
    assert rows[0]["consecutive_failures"] == 2
    assert status.returncode == 0  # the last good backup is still fresh


def test_failing_notifiers_never_change_the_exit_code(job_env, recording_server):
    recording_server.respond(
        f"/bot{TOKEN}/sendMessage",
        status=500,
        body={"ok": False, "error_code": 500, "description": "Internal Server Error"},
    )
    recording_server.hang("/hooks/secret-webhook-path", seconds=5)
    result = run_job("backup", env=_env(job_env, recording_server))
    assert result.returncode == 0, result.output
    assert len(_telegram(recording_server)) >= 2  # retried
    assert "notifications sent: 1, failed: 2" in result.stderr  # the ping still went


def test_notify_on_failure_skips_successes(job_env, recording_server):
    result = run_job("backup", env=_env(job_env, recording_server, NOTIFY_ON="failure"))
    assert result.returncode == 0
    assert _telegram(recording_server) == []
    assert recording_server.requests_to("/ping/secret-check-uuid")  # heartbeat still sent


def test_metrics_pushed_and_written(job_env, pushgateway, tmp_path, sample_db):
    metrics_file = tmp_path / "pgbackup.prom"
    env = {
        **job_env,
        "PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url,
        "METRICS_FILE": str(metrics_file),
    }
    assert run_job("backup", env=env).returncode == 0
    pushed = pushgateway.metrics_text()
    assert "pgbackup_last_success_timestamp_seconds" in pushed
    assert f'database="{sample_db}"' in pushed
    families = {f.name: f for f in text_string_to_metric_families(metrics_file.read_text())}
    for name in (
        "pgbackup_last_success_timestamp_seconds",
        "pgbackup_last_run_success",
        "pgbackup_last_size_bytes",
        "pgbackup_last_duration_seconds",
        "pgbackup_consecutive_failures",
        "pgbackup_last_run_timestamp_seconds",
    ):
        assert name in families, name
    [success] = families["pgbackup_last_run_success"].samples
    assert success.value == 1 and success.labels["database"] == sample_db


def test_a_run_refused_by_the_server_still_names_the_database(job_env, recording_server, sample_db):
    env = _env(job_env, recording_server, PGPASSWORD="wrong-Pass-1")
    result = run_job("backup", env=env)
    assert result.returncode == 3
    [message] = _telegram(recording_server)
    assert "failed" in message and sample_db in message
    assert "PGPASSWORD" in message and "wrong-Pass-1" not in message
    [hook] = recording_server.requests_to("/hooks/secret-webhook-path")
    assert hook.json()["database"] == sample_db and hook.json()["status"] == "failure"


def _verify_samples(path, database):
    """verify metric name -> value for ``database``, from a textfile."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
        if sample.labels.get("database") == database
    }


def test_verify_metrics_survive_a_failed_verify(
    job_env, backup_dir, pushgateway, tmp_path, sample_db
):
    """A real test restore publishes how long it took and when verify last passed; a verify of
    a damaged backup then says it failed, and the last success stays (in the file and in the
    Pushgateway), so "verify failing" and "no verify success in 8 days" can both be told."""
    metrics_file = tmp_path / "pgbackup.prom"
    env = {
        **job_env,
        "PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url,
        "METRICS_FILE": str(metrics_file),
    }
    assert run_job("backup", env=env).returncode == 0
    backup_metrics = metrics_file.read_text()
    ok = run_job("verify", "latest", "--restore-test", env=env)
    assert ok.returncode == 0, ok.output
    verify_file = tmp_path / "pgbackup.verify.prom"
    passed = _verify_samples(verify_file, sample_db)
    assert passed["pgbackup_last_verify_success"] == 1
    assert passed["pgbackup_last_restore_test_seconds"] > 0
    assert passed["pgbackup_last_verify_success_timestamp_seconds"] > 0
    pushed = pushgateway.metrics_text()
    assert "pgbackup_last_restore_test_seconds{" in pushed

    [dump] = list(backup_dir.rglob("*.dump.zst"))
    data = dump.read_bytes()
    middle = len(data) // 2
    dump.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    failed = run_job("verify", env=env)
    assert failed.returncode == 5, failed.output
    after = _verify_samples(verify_file, sample_db)
    assert after == {**passed, "pgbackup_last_verify_success": 0}
    for family in text_string_to_metric_families(pushgateway.metrics_text()):
        for sample in family.samples:
            if sample.name in passed and sample.labels.get("database") == sample_db:
                assert sample.value == after[sample.name], sample
    assert metrics_file.read_text() == backup_metrics  # the backup's series are left alone


def test_failure_escalation_and_recovery_in_french(job_env, recording_server, tmp_path, sample_db):
    """Two failed backups, then a good one (ALERT_AFTER_FAILURES=2, NOTIFY_LANGUAGE=fr): a
    failure as the runbook words it, a louder escalation calling people, then the recovery; the
    dates in Paris time."""
    env = _env(
        job_env,
        recording_server,
        NOTIFY_LANGUAGE="fr",
        NOTIFY_TIMEZONE="Europe/Paris",
        NOTIFY_MENTION="@alice",
        ALERT_AFTER_FAILURES="2",
    )
    assert run_job("backup", env=env).returncode == 0  # a success to fail after
    broken = fake_pg_dump(tmp_path / "bin", "echo 'pg_dump: error: boom' >&2; exit 1")
    for _ in range(2):
        result = run_job("backup", env={**env, "BACKUP_PG_BIN_DIRS": str(broken)})
        assert result.returncode == 3, result.output
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output

    requests = recording_server.requests_to(f"/bot{TOKEN}/sendMessage")
    first, failure, escalation, recovery = [r.json() for r in requests]
    assert first["text"].startswith("<b>✅ Backup PostgreSQL Réussi</b>")
    assert first["disable_notification"] is True

    lines = failure["text"].splitlines()
    assert lines[0] == "<b>❌ Backup PostgreSQL Échoué</b>"
    assert lines[2].startswith("📅 Date : ") and lines[2].endswith((" CET", " CEST"))
    assert "⚠️ Action requise : Vérifier les logs" in lines
    assert "Commande manuelle :" in lines and "@alice" not in failure["text"]
    assert failure["disable_notification"] is False

    text = escalation["text"]
    assert text.startswith("@alice <b>🚨 Backup PostgreSQL : 2e échec consécutif</b>")
    assert "🕰️ Aucun backup réussi depuis le " in text and sample_db in text
    assert escalation["disable_notification"] is False

    text = recovery["text"]
    assert text.startswith("<b>✅ Backup PostgreSQL Rétabli après 2 échecs</b>")
    assert "🕰️ Backup réussi précédent : " in text and "🔄 Rétention : 30 jours" in text
    assert recovery["disable_notification"] is False

    hooks = [r.json() for r in recording_server.requests_to("/hooks/secret-webhook-path")]
    assert [h["event"] for h in hooks] == ["success", "failure", "escalation", "recovery"]
    assert hooks[2]["text"].startswith("@alice 🚨 Backup PostgreSQL : 2e échec consécutif")
    # Log lines stay English.
    assert "notifications sent" in result.stderr


def test_notify_on_failure_still_sends_the_recovery(job_env, recording_server, tmp_path):
    env = _env(job_env, recording_server, NOTIFY_ON="failure")
    broken = fake_pg_dump(tmp_path / "bin", "echo 'pg_dump: error: boom' >&2; exit 1")
    assert run_job("backup", env={**env, "BACKUP_PG_BIN_DIRS": str(broken)}).returncode == 3
    assert run_job("backup", env=env).returncode == 0
    assert run_job("backup", env=env).returncode == 0  # a routine success: not told
    failure, recovery = _telegram(recording_server)
    assert "PostgreSQL backup failed" in failure
    assert "PostgreSQL backup recovered after 1 failure" in recovery
