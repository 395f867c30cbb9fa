"""``check`` proves what it can without a backup: test notifications (``--notify``), METRICS_FILE's
directory, the age identity against the recipients; and the verbs' ``--help`` (issue 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_job
from tests.fixtures import http as http_fixtures

recording_server = http_fixtures.recording_server

TOKEN = http_fixtures.TELEGRAM_TOKEN
HOOK, PING = http_fixtures.WEBHOOK_PATH, http_fixtures.PING_PATH

_channels = http_fixtures.channel_env


def test_check_notify_sends_a_test_message_through_each_channel(job_env, recording_server):
    result = run_job("check", "--notify", env={**job_env, **_channels(recording_server)})
    assert result.returncode == 0, result.output
    [telegram] = recording_server.requests_to(f"/bot{TOKEN}/sendMessage")
    assert telegram.json()["chat_id"] in ("4242", 4242) and "check" in telegram.json()["text"]
    [hook] = recording_server.requests_to(HOOK)
    assert hook.json()["command"] == "check"
    # No ping: a success would hide a missed backup, /fail would raise an alarm.
    assert not [path for path in recording_server.paths() if path.startswith(PING)]
    assert "test message sent" in result.stdout and "not pinged" in result.stdout
    assert TOKEN not in result.output and "secret-webhook-path" not in result.output


def test_check_without_notify_sends_nothing(job_env, recording_server):
    result = run_job("check", env={**job_env, **_channels(recording_server)})
    assert result.returncode == 0, result.output
    assert recording_server.paths() == []


def test_check_notify_fails_when_a_channel_fails(job_env, recording_server):
    recording_server.respond(HOOK, status=404, body="no such hook")
    result = run_job("check", "--notify", env={**job_env, **_channels(recording_server)})
    assert result.returncode == 2, result.output
    assert "notification test failed" in result.stderr and "webhook" in result.stderr
    assert "HTTP 404" in result.stderr
    # The other channel was still tried, and the rest of check still ran.
    assert recording_server.requests_to(f"/bot{TOKEN}/sendMessage")
    assert "write, read back, delete ok" in result.stdout
    assert TOKEN not in result.output and "secret-webhook-path" not in result.output


def test_check_notify_without_a_channel_fails(job_env):
    result = run_job("check", "--notify", env=job_env)
    assert result.returncode == 2, result.output
    assert "no notification channel is configured" in result.stderr


@pytest.mark.parametrize(
    ("where", "expected"),
    [("missing/dir/pgbackup.prom", "does not exist"), ("", "is a directory")],
    ids=["missing-directory", "a-directory"],
)
def test_check_fails_when_metrics_file_cannot_be_written(job_env, tmp_path, where, expected):
    path = tmp_path / where if where else tmp_path
    result = run_job("check", env={**job_env, "METRICS_FILE": str(path)})
    assert result.returncode == 2, result.output
    assert "METRICS_FILE" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.output


def test_check_writes_and_removes_a_probe_next_to_metrics_file(job_env, tmp_path):
    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    env = {**job_env, "METRICS_FILE": str(metrics_dir / "pgbackup.prom")}
    result = run_job("check", env=env)
    assert result.returncode == 0, result.output
    assert f"METRICS_FILE: {metrics_dir} is writable" in result.stdout
    assert list(metrics_dir.iterdir()) == []


def _keygen(path: Path) -> tuple[str, str]:
    """(identity text, public key)."""
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    text = path.read_text()
    public = next(
        line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("# public key: ")
    )
    return text, public


def test_check_proves_the_identity_opens_what_the_recipients_encrypt(job_env, tmp_path):
    identity, public = _keygen(tmp_path / "key.txt")
    other_identity, _ = _keygen(tmp_path / "other.txt")
    env = {**job_env, "BACKUP_AGE_RECIPIENTS": public, "BACKUP_AGE_IDENTITY": identity}
    ok = run_job("check", env=env)
    assert ok.returncode == 0, ok.output
    assert "BACKUP_AGE_IDENTITY opens: ok" in ok.stdout

    wrong = run_job("check", env={**env, "BACKUP_AGE_IDENTITY": other_identity})
    assert wrong.returncode == 2, wrong.output
    assert "BACKUP_AGE_IDENTITY cannot open what is encrypted to BACKUP_AGE_RECIPIENTS" in (
        wrong.stderr
    )
    assert "AGE-SECRET-KEY" not in wrong.output


def test_check_proves_the_passphrase_round_trip(job_env, tmp_path):
    identity, _ = _keygen(tmp_path / "key.txt")
    env = {
        **job_env,
        "BACKUP_AGE_PASSPHRASE": "correct horse battery staple",
        "BACKUP_AGE_IDENTITY": identity,
    }
    result = run_job("check", env=env)
    assert result.returncode == 0, result.output
    assert "what BACKUP_AGE_PASSPHRASE encrypts" in result.stdout


@pytest.mark.parametrize(
    ("verb", "words"),
    [("backup", "a manifest written last as the commit"), ("check", "--notify, a test message")],
)
def test_verbs_help_describes_them(verb: str, words: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "entrypoint.py"), verb, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert words in " ".join(result.stdout.split())


def test_check_tries_every_part_when_the_database_is_down(job_env, tmp_path):
    env = {**job_env, "PGPORT": "1"}
    result = run_job("check", "--notify", env=env)  # and no channel configured
    # The first failure's code (--notify: 2), every failure named, the destination probed.
    assert result.returncode == 2, result.output
    assert "no notification channel" in result.stderr and "database" in result.stdout
    assert "database: FAILED" in result.stdout
    assert "write, read back, delete ok" in result.stdout


def test_check_fails_on_a_typo_unless_strict_env_is_off(job_env):
    env = {**job_env, "BACKUP_RETENTON_DAYS": "7"}
    result = run_job("check", env=env)
    assert result.returncode == 2, result.output
    assert "BACKUP_RETENTON_DAYS (did you mean BACKUP_RETENTION_DAYS?)" in result.output
    relaxed = run_job("check", env={**env, "BACKUP_STRICT_ENV": "false"})
    assert relaxed.returncode == 0, relaxed.output
    assert "environment: warning:" in relaxed.stdout and "check: ok" in relaxed.stdout


def test_a_typo_warning_does_not_rename_the_command_in_reports(job_env, recording_server):
    env = {
        **job_env,
        "NOTIFY_WEBHOOK_URL": f"{recording_server.url}/hook",
        "BACKUP_RETENTON_DAYS": "7",
    }
    env.pop("PGDATABASE")
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    [request] = recording_server.requests
    assert request.json()["command"] == "backup"
