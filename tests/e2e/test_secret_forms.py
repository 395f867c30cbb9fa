"""Issue 19 item 2, through the CLI: real error paths never print a secret in any of its forms
(as is, repr-escaped, percent- or base64-encoded, one line of it), at every log level.

S3: a two-line AWS_SESSION_TOKEN_FILE against the real SeaweedFS server (http.client refuses
the header and quotes it as a bytes repr). Notifiers: a Telegram API that echoes the token in
several encodings, and a webhook whose secret path is percent-encoded (urllib3's debug lines
print it so; a server may decode it)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, unquote

import pytest

from tests.conftest import run_job
from tests.fixtures import http as http_fixtures
from tests.unit.test_redaction_forms import _leaks

recording_server = http_fixtures.recording_server

TOKENS = [
    "FwoGZXIvYXdzEBYaDH7firstline\nsecond-line-of-the-token",
    "IQoJb3JpZ2luX2VjE'quote\"d\\back\nslash-line-two-ünï",
    "short\n0123456789abcdef\r\nthird-line-here",
]


@pytest.mark.parametrize("level", ["debug", "info"])
@pytest.mark.parametrize("token", TOKENS, ids=["two-lines", "quotes-unicode", "crlf"])
def test_check_never_prints_a_session_token_that_spans_lines(
    pg15, s3_server, tmp_path, token: str, level: str
) -> None:
    bucket = s3_server.create_bucket()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    env = pg15.env(
        "postgres",
        BACKUP_DESTINATIONS=f"s3://{bucket}/pg",
        BACKUP_LOCK_DIR=str(tmp_path),
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_SESSION_TOKEN_FILE=str(token_file),
        AWS_REGION=s3_server.region,
        S3_ENDPOINT_URL=s3_server.endpoint_url,
        BACKUP_RETRY_ATTEMPTS="1",
        LOG_LEVEL=level,
    )
    result = run_job("check", env=env)
    assert result.returncode == 4, result.output
    assert f"s3://{bucket}/pg" in result.output and "FAILED" in result.output
    assert not _leaks(token.strip(), result.output), result.output


TELEGRAM_TOKEN = "123456:ABCdefGhIJKlmnOPQrstUVwxyz0123456789"
HOOK_PATH = "/hooks/s%C3%A9cret-w%C3%A9bhook-p%C3%A4th"


@pytest.mark.parametrize("level", ["debug", "info"])
def test_notifier_errors_never_print_their_secrets(
    pg15, recording_server, tmp_path, level: str
) -> None:
    echoed = " | ".join(
        (
            repr(TELEGRAM_TOKEN.encode()),
            quote(TELEGRAM_TOKEN, safe=""),
            base64.b64encode(f"bot:{TELEGRAM_TOKEN}".encode()).decode(),
            json.dumps(TELEGRAM_TOKEN),
        )
    )
    recording_server.respond(
        f"/bot{TELEGRAM_TOKEN}/sendMessage",
        status=401,
        body={"ok": False, "error_code": 401, "description": f"Unauthorized: {echoed}"},
    )
    recording_server.respond(HOOK_PATH, status=400, body="bad")
    env = pg15.env(
        "postgres",
        BACKUP_DESTINATIONS=f"file://{tmp_path}/backups",
        BACKUP_LOCK_DIR=str(tmp_path),
        TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
        TELEGRAM_CHAT_ID="4242",
        TELEGRAM_API_URL=recording_server.url,
        NOTIFY_WEBHOOK_URL=f"{recording_server.url}{HOOK_PATH}",
        LOG_LEVEL=level,
    )
    (tmp_path / "backups").mkdir()
    result = run_job("check", "--notify", env=env)
    assert result.returncode == 2, result.output
    assert "Unauthorized" in result.output and "HTTP 400" in result.output
    assert recording_server.requests_to(f"/bot{TELEGRAM_TOKEN}/sendMessage")
    for secret in (TELEGRAM_TOKEN, TELEGRAM_TOKEN.split(":")[1], HOOK_PATH, unquote(HOOK_PATH)):
        assert not _leaks(secret, result.output), result.output
