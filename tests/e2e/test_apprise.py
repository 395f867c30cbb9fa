"""NOTIFY_URLS in real runs, through the CLI: apprise's json:// target to a local recording HTTP
server and its mailto:// target to a local SMTP server (aiosmtpd), on a real backup's success
and failure, a refused URL, a target that never answers, a configuration error, check --notify.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import run_job
from tests.e2e.helpers import fake_pg_dump
from tests.fixtures import http as http_fixtures
from tests.fixtures import smtp as smtp_fixtures
from tests.fixtures.http import RecordingServer
from tests.fixtures.smtp import SmtpServer

recording_server = http_fixtures.recording_server
smtp_server = smtp_fixtures.smtp_server

HOOK = "/apprise/secret-apprise-hook-token"
SECRETS = ("secret-apprise-hook-token", smtp_fixtures.PASSWORD)


def _json_url(server: RecordingServer, path: str = HOOK) -> str:
    return server.url.replace("http://", "json://") + path


def _env(job_env: dict[str, str], urls: str, **extra: str) -> dict[str, str]:
    return {**job_env, "NOTIFY_URLS": urls, "NOTIFY_TIMEOUT_SECONDS": "2", **extra}


def _no_secret(output: str) -> None:
    for secret in SECRETS:
        assert secret not in output


def test_a_backup_is_told_by_json_and_email_on_success_and_failure(
    job_env, recording_server, smtp_server: SmtpServer, tmp_path: Path, sample_db
):
    urls = f"{_json_url(recording_server)}, {smtp_server.url()}"
    # DEBUG: the most talkative level still prints no URL nor password (urllib3's request lines
    # name the path, which is masked).
    env = _env(job_env, urls, LOG_LEVEL="DEBUG")
    ok = run_job("backup", env=env)
    assert ok.returncode == 0, ok.output
    assert "notifications sent: 2, failed: 0" in ok.stderr
    _no_secret(ok.output)
    [hook] = recording_server.requests_to(HOOK)
    assert hook.json()["type"] == "success"
    assert hook.json()["title"] == "✅ PostgreSQL backup succeeded"
    assert f"Database: {sample_db}" in hook.json()["message"]
    [mail] = smtp_server.messages
    assert mail.subject == "✅ PostgreSQL backup succeeded"
    assert sample_db in mail.text and "Retention: 30 days" in mail.text

    broken = fake_pg_dump(tmp_path / "bin", "echo 'pg_dump: error: boom' >&2; exit 1")
    failing = {**env, "BACKUP_PG_BIN_DIRS": str(broken), "LOG_LEVEL": "INFO"}
    for in_a_row in (1, 2):
        result = run_job("backup", env=failing)
        assert result.returncode == 3, result.output
        _no_secret(result.output)
        sent = recording_server.requests_to(HOOK)[-1].json()
        assert sent["type"] == "failure"
        assert "pg_dump: error: boom" in sent["message"]
        assert sent["title"].startswith("🚨") is (in_a_row == 2)  # ALERT_AFTER_FAILURES=2
    subjects = [mail.subject for mail in smtp_server.messages]
    assert subjects == [
        "✅ PostgreSQL backup succeeded",
        "❌ PostgreSQL backup failed",
        "🚨 PostgreSQL backup: 2nd failure in a row",
    ]
    assert "No successful backup since" in smtp_server.messages[-1].text


def test_a_refused_url_stops_the_job_before_anything_runs(job_env, backup_dir, recording_server):
    urls = f"{_json_url(recording_server)}, slack://secret-apprise-hook-token"
    result = run_job("backup", env=_env(job_env, urls))
    assert result.returncode == 2, result.output
    assert "NOTIFY_URLS entry 2 (slack://) is not a URL apprise accepts" in result.stderr
    _no_secret(result.output)
    assert not list(backup_dir.rglob("*.dump*"))
    # The configuration error itself still reaches the entry apprise accepts.
    [report] = recording_server.requests_to(HOOK)
    assert report.json()["type"] == "failure" and "NOTIFY_URLS" in report.json()["message"]


def test_a_target_that_never_answers_leaves_the_backup_done(job_env, recording_server):
    recording_server.hang(HOOK, seconds=60)
    other = "/apprise/other"
    urls = f"{_json_url(recording_server)} {_json_url(recording_server, other)}"
    env = _env(job_env, urls, NOTIFY_TIMEOUT_SECONDS="1")
    started = time.monotonic()
    result = run_job("backup", env=env, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.output
    assert "notifications sent: 1, failed: 1" in result.stderr
    assert "notify: apprise 1 (JSON 127.0.0.1:" in result.stderr
    assert len(recording_server.requests_to(other)) == 1
    _no_secret(result.output)
    # 3 attempts of 1 s and the waits between them, not the server's 60 s.
    assert elapsed < 45, elapsed


def test_check_notify_sends_a_test_message_through_each_url(
    job_env, recording_server, smtp_server: SmtpServer
):
    urls = f"{_json_url(recording_server)}\n{smtp_server.url()}"
    result = run_job("check", "--notify", env=_env(job_env, urls))
    assert result.returncode == 0, result.output
    assert "notify: apprise 1 (JSON 127.0.0.1:" in result.output
    assert f"notify: apprise 2 (E-Mail 127.0.0.1:{smtp_server.port}): test message sent" in (
        result.output
    )
    [hook] = recording_server.requests_to(HOOK)
    assert hook.json()["title"] == "✅ PostgreSQL check succeeded"
    assert [mail.subject for mail in smtp_server.messages] == ["✅ PostgreSQL check succeeded"]
    _no_secret(result.output)


def test_check_notify_fails_when_an_url_fails(job_env, recording_server):
    recording_server.respond(HOOK, status=500)
    urls = f"{_json_url(recording_server)}?retry=0"
    result = run_job("check", "--notify", env=_env(job_env, urls))
    assert result.returncode == 2, result.output
    assert "notification test failed: apprise 1 (JSON 127.0.0.1:" in result.stderr
    assert "NOTIFY_URLS" in result.stderr  # the hint
    _no_secret(result.output)


def test_apprise_targets_are_told_in_notify_language(job_env, recording_server, tmp_path):
    """NOTIFY_LANGUAGE and NOTIFY_TIMEZONE reach apprise targets as they reach Telegram."""
    env = _env(
        job_env,
        _json_url(recording_server),
        NOTIFY_LANGUAGE="fr",
        NOTIFY_TIMEZONE="Europe/Paris",
    )
    assert run_job("backup", env=env).returncode == 0
    broken = fake_pg_dump(tmp_path / "bin", "echo 'pg_dump: error: boom' >&2; exit 1")
    assert run_job("backup", env={**env, "BACKUP_PG_BIN_DIRS": str(broken)}).returncode == 3
    success, failure = (r.json() for r in recording_server.requests_to(HOOK))
    assert success["title"] == "✅ Backup PostgreSQL Réussi"
    assert "🔄 Rétention : 30 jours" in success["message"]
    assert failure["title"] == "❌ Backup PostgreSQL Échoué"
    assert "⚠️ Action requise : Vérifier les logs" in failure["message"]
    assert any(
        line.startswith("📅 Date : ") and line.endswith(("CET", "CEST"))
        for line in failure["message"].splitlines()
    )
