"""Notifiers against a local recording HTTP server: messages, payloads, retries, timeouts."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from backup import config as config_module
from backup.config import NotifyConfig, Secret
from backup.job.outcome import DatabaseResult, DestinationResult, RunReport
from backup.languages.en import ordinal
from backup.notify import Delivery, build_notifiers, send_all, start_all
from backup.notify.healthchecks import MAX_BODY_BYTES, HealthchecksNotifier, ping_body
from backup.notify.message import TELEGRAM_MAX_CHARS, format_message
from backup.notify.webhook import payload
from tests.fixtures import http as http_fixtures
from tests.fixtures.http import RecordingServer

# The fixture, made visible to this module (pytest_plugins belongs to the root conftest only).
recording_server = http_fixtures.recording_server

TOKEN = "123456789:AAH-secret_Token-value"
CHAT_ID = "4242"
HC_UUID = "5f1c7a3e-hc-secret-uuid"
WEBHOOK_SECRET_PATH = "/hooks/T000/B000/webhook-secret"
B2 = "b2://my-bucket/backups/postgresql"
S3 = "s3://other-bucket/pg"
START = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)
FAST = Delivery(timeout_s=2.0, attempts=3, backoff_s=0.01, max_backoff_s=0.05)


def report(status: str = "success", **changes: object) -> RunReport:
    """A run report of one database, ``shop``, stored in B2."""
    ok = status != "failure"
    result = DatabaseResult(
        database="shop",
        status=status,
        name="shop-20251110T030000Z" if ok else None,
        size_bytes=2_340_000 if ok else 0,
        raw_bytes=12_450_000 if ok else 0,
        duration_s=14.9,
        destinations=(DestinationResult(B2, ok, None if ok else "upload failed"),),
        error=None if ok else "pg_dump: error: connection to server failed: Connection refused",
    )
    base = RunReport(
        command="backup",
        status=status,
        exit_code={"success": 0, "failure": 3, "partial": 6}[status],
        started_at=START,
        finished_at=START + timedelta(seconds=15.4),
        host="db.internal:5432",
        results=(result,),
        error=result.error,
        hint=None if ok else "check PGHOST, PGPORT, PGUSER, PGPASSWORD",
        consecutive_failures=0 if ok else 1,
        log_tail=("12:00:00 INFO backup started", "12:00:15 INFO backup done"),
    )
    return replace(base, **changes)


def partial_report() -> RunReport:
    result = DatabaseResult(
        database="shop",
        status="partial",
        name="shop-20251110T030000Z",
        size_bytes=2_340_000,
        duration_s=14.9,
        destinations=(DestinationResult(B2, True), DestinationResult(S3, False, "AccessDenied")),
        error="s3://other-bucket/pg: AccessDenied",
    )
    return report(
        "partial",
        results=(result,),
        error="the backup reached 1 of 2 destinations",
        hint="the named destinations did not receive this backup; the others are committed",
        consecutive_failures=1,
    )


def notify_config(server: RecordingServer, **changes: object) -> NotifyConfig:
    base = NotifyConfig(
        telegram_bot_token=Secret(TOKEN),
        telegram_chat_id=CHAT_ID,
        telegram_api_url=server.url,
        webhook_urls=(Secret(server.url + WEBHOOK_SECRET_PATH),),
        healthcheck_url=Secret(f"{server.url}/{HC_UUID}"),
        timeout_s=2.0,
    )
    return replace(base, **changes)


TELEGRAM_PATH = f"/bot{TOKEN}/sendMessage"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything our package logged, at any level, plus every INFO+ line of any library."""
    return "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("backup") or record.levelno >= logging.INFO
    )


# ---- message text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (101, "101st"),
        (111, "111th"),
        (112, "112th"),
    ],
)
def test_ordinal(n: int, expected: str) -> None:
    assert ordinal(n) == expected


def test_success_message_has_the_runbook_fields() -> None:
    text = format_message(report())
    assert text.splitlines()[0] == "<b>✅ PostgreSQL backup succeeded</b>"
    assert "📅 Date: 2025-11-10 03:00:15 UTC" in text
    assert "💾 Size: 2.34 MB" in text
    assert f"☁️ Storage: Backblaze B2 ({B2})" in text
    assert "🔄 Retention: 30 days" in text
    assert "🗄️ Database: shop" in text
    assert "📦 Backup: shop-20251110T030000Z" in text
    assert "⏱️ Duration: 15.4 s" in text
    assert "Manual command" not in text


def test_failure_message_has_error_hint_and_manual_command() -> None:
    text = format_message(report("failure"))
    assert text.splitlines()[0] == "<b>❌ PostgreSQL backup failed</b>"
    assert "📅 Date: 2025-11-10 03:00:15 UTC" in text
    assert "❗ Error: pg_dump: error: connection to server failed: Connection refused" in text
    assert "💡 Hint: check PGHOST, PGPORT, PGUSER, PGPASSWORD" in text
    assert "⚠️ Action required: check the logs\n\nManual command:" in text
    assert text.endswith("Manual command:\n<code>pgbackup backup</code>")
    assert "in a row" not in text  # one failure is below ALERT_AFTER_FAILURES=2
    assert "🚨" not in text
    assert "Size" not in text


@pytest.mark.parametrize(("count", "word"), [(2, "2nd"), (3, "3rd"), (11, "11th"), (21, "21st")])
def test_escalated_failure_says_how_many_and_since_when(count: int, word: str) -> None:
    last = START - timedelta(days=2)
    text = format_message(
        report("failure", consecutive_failures=count, last_success_at=last), html=False
    )
    assert text.splitlines()[0] == f"🚨 PostgreSQL backup: {word} failure in a row"
    assert "🕰️ No successful backup since 2025-11-08 03:00:00 UTC (2 days ago)" in text
    assert "❗ Error: pg_dump: error: connection to server failed" in text
    assert text.endswith("Manual command:\npgbackup backup")


def test_escalated_failure_without_any_success_says_so() -> None:
    text = format_message(report("failure", consecutive_failures=3, last_success_at=None))
    assert text.splitlines()[0] == "<b>🚨 PostgreSQL backup: 3rd failure in a row</b>"
    assert "🕰️ No successful backup yet" in text


def test_escalation_follows_alert_after_failures() -> None:
    text = format_message(report("failure", consecutive_failures=2, alert_after_failures=3))
    assert "in a row" not in text and "🚨" not in text
    text = format_message(report("failure", consecutive_failures=3, alert_after_failures=3))
    assert "🚨 PostgreSQL backup: 3rd failure in a row" in text


def test_partial_message_names_the_failed_destination() -> None:
    text = format_message(partial_report())
    assert text.splitlines()[0] == "<b>⚠️ PostgreSQL backup partly failed</b>"
    assert f"☁️ Stored in: Backblaze B2 ({B2})" in text
    assert f"❌ Not stored in S3 ({S3}): AccessDenied" in text
    assert "💾 Size: 2.34 MB" in text
    assert "💡 Hint: the named destinations did not receive this backup" in text


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("name", ["my_shop_db", "a*b*c", "<b>bold</b>", "R&D_<x>*"])
def test_names_are_escaped_for_telegram_html(name: str) -> None:
    results = (
        replace(report().results[0], database=name, name=f"{name}-20251110T030000Z"),
        replace(report().results[0], database="crm", error=f"role {name} & co"),
    )
    bad = report("failure", results=results, error=f"cannot dump {name}", consecutive_failures=2)
    for rep in (report(results=results[:1]), bad):
        text = format_message(rep)
        parser = _TagCollector()
        parser.feed(text)
        assert set(parser.tags) <= {"b", "code"}
        assert name in "".join(parser.text)
        assert name in format_message(rep, html=False)


def test_many_databases_stay_under_the_telegram_limit() -> None:
    results = tuple(
        replace(report().results[0], database=f"database_{i:03d}", error="x" * 400)
        for i in range(200)
    )
    text = format_message(report("failure", results=results))
    assert len(text) <= TELEGRAM_MAX_CHARS
    assert "more" in text


# ---- Telegram over HTTP --------------------------------------------------------------------


def test_telegram_sends_chat_id_parse_mode_and_text(recording_server: RecordingServer) -> None:
    notifiers = build_notifiers(
        notify_config(recording_server, webhook_urls=(), healthcheck_url=None), FAST
    )
    assert [n.name for n in notifiers] == ["telegram"]
    assert send_all(notifiers, report(), "always") == 0
    (request,) = recording_server.requests_to(TELEGRAM_PATH)
    assert request.method == "POST"
    body = request.json()
    assert body["chat_id"] == CHAT_ID
    assert body["parse_mode"] == "HTML"
    assert body["disable_web_page_preview"] is True
    assert body["text"] == format_message(report())
    assert body["disable_notification"] is True  # a routine success does not ring


@pytest.mark.parametrize(
    "rep",
    [
        report("failure"),
        partial_report(),
        report("failure", consecutive_failures=2),
        report(previous_failures=2),
    ],
    ids=["failure", "partial", "escalation", "recovery"],
)
def test_telegram_rings_for_everything_but_a_routine_success(
    recording_server: RecordingServer, rep: RunReport
) -> None:
    notifiers = build_notifiers(
        notify_config(recording_server, webhook_urls=(), healthcheck_url=None), FAST
    )
    assert send_all(notifiers, rep, "always") == 0
    (request,) = recording_server.requests_to(TELEGRAM_PATH)
    assert request.json()["disable_notification"] is False


def test_environment_variables_reach_the_notifiers(recording_server: RecordingServer) -> None:
    config = config_module.load(
        {
            "PGDATABASE": "shop",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "ADMIN_USER_ID": CHAT_ID,
            "TELEGRAM_API_URL": recording_server.url,
            "NOTIFY_WEBHOOK_URL": f"{recording_server.url}/a,{recording_server.url}/b",
            "HEALTHCHECK_URL": f"{recording_server.url}/{HC_UUID}",
        }
    ).notify
    notifiers = build_notifiers(config, FAST)
    assert len(notifiers) == 4
    assert send_all(notifiers, report(), config.notify_on) == 0
    assert sorted(recording_server.paths()) == sorted([TELEGRAM_PATH, "/a", "/b", f"/{HC_UUID}"])
    assert recording_server.requests_to(TELEGRAM_PATH)[0].json()["chat_id"] == CHAT_ID


def test_telegram_ok_false_is_a_failure_and_the_token_is_never_logged(
    recording_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recording_server.respond(
        TELEGRAM_PATH,
        status=400,
        body={"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
    )
    notifiers = build_notifiers(notify_config(recording_server), FAST)
    assert send_all(notifiers, report("failure"), "always") == 1
    assert len(recording_server.requests_to(TELEGRAM_PATH)) == 1  # a 4xx is not resent
    logged = all_log_text(caplog)
    assert "telegram failed: telegram: Bad Request: chat not found" in logged
    assert TOKEN not in logged
    assert TOKEN.split(":")[1] not in logged


def test_telegram_ok_false_with_http_200_is_a_failure(recording_server: RecordingServer) -> None:
    recording_server.respond(TELEGRAM_PATH, body={"ok": False, "description": "odd proxy"})
    (telegram,) = build_notifiers(
        notify_config(recording_server, webhook_urls=(), healthcheck_url=None), FAST
    )
    assert send_all([telegram], report(), "always") == 1


def test_telegram_429_is_retried(recording_server: RecordingServer) -> None:
    recording_server.respond(
        TELEGRAM_PATH,
        status=429,
        body={"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 0"},
        times=1,
    )
    notifiers = build_notifiers(
        notify_config(recording_server, webhook_urls=(), healthcheck_url=None), FAST
    )
    assert send_all(notifiers, report(), "always") == 0
    assert len(recording_server.requests_to(TELEGRAM_PATH)) == 2


def test_unreachable_telegram_is_retried_counted_and_logged_without_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = NotifyConfig(
        telegram_bot_token=Secret(TOKEN),
        telegram_chat_id=CHAT_ID,
        telegram_api_url=closed_port_url(),
    )
    notifiers = build_notifiers(config, FAST)
    assert send_all(notifiers, report("failure"), "always") == 1
    logged = all_log_text(caplog)
    assert "cannot connect" in logged
    assert "attempt 2 of 3" in logged
    assert TOKEN not in logged


# ---- webhook -------------------------------------------------------------------------------


def test_webhook_payload_fields(recording_server: RecordingServer) -> None:
    notifiers = build_notifiers(
        notify_config(recording_server, telegram_bot_token=None, healthcheck_url=None), FAST
    )
    assert send_all(notifiers, partial_report(), "always") == 0
    (request,) = recording_server.requests_to(WEBHOOK_SECRET_PATH)
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert body["event"] == "partial"
    assert body["status"] == "partial"
    assert body["database"] == "shop"
    assert body["databases"] == ["shop"]
    assert body["name"] == "shop-20251110T030000Z"
    assert body["size_bytes"] == 2_340_000
    assert body["duration_s"] == 15.4
    assert body["destinations"] == [B2, S3]
    assert body["failed_destinations"] == [S3]
    assert body["error"] == "the backup reached 1 of 2 destinations"
    assert body["hint"].startswith("the named destinations")
    assert body["consecutive_failures"] == 1
    assert body["started_at"] == "2025-11-10T03:00:00Z"
    assert body["finished_at"] == "2025-11-10T03:00:15Z"
    failed = {"url": S3, "ok": False, "error": "AccessDenied"}
    assert body["results"][0]["destinations"][1] == failed
    assert body["text"] == body["content"] == format_message(partial_report(), html=False)
    assert "<b>" not in body["text"]


def test_webhook_joins_several_databases() -> None:
    second = replace(report().results[0], database="crm", name="crm-20251110T030001Z")
    body = payload(report(results=(report().results[0], second)))
    assert body["database"] == "shop, crm"
    assert body["databases"] == ["shop", "crm"]
    assert body["name"] == "shop-20251110T030000Z, crm-20251110T030001Z"
    assert [r["database"] for r in body["results"]] == ["shop", "crm"]  # type: ignore[attr-defined]


def test_each_webhook_url_gets_the_report(recording_server: RecordingServer) -> None:
    urls = tuple(Secret(f"{recording_server.url}/hook/{i}") for i in range(3))
    notifiers = build_notifiers(NotifyConfig(webhook_urls=urls), FAST)
    assert [n.name for n in notifiers] == [
        f"webhook {i} ({recording_server.url.removeprefix('http://')})" for i in (1, 2, 3)
    ]
    assert send_all(notifiers, report(), "always") == 0
    assert sorted(recording_server.paths()) == ["/hook/0", "/hook/1", "/hook/2"]


# ---- healthchecks ------------------------------------------------------------------------


def test_healthchecks_start_success_and_fail_paths(recording_server: RecordingServer) -> None:
    config = NotifyConfig(healthcheck_url=Secret(f"{recording_server.url}/{HC_UUID}"))
    notifiers = build_notifiers(config, FAST)
    assert start_all(notifiers) == 0
    for status in ("success", "failure", "partial"):
        assert send_all(notifiers, report(status), "always") == 0
    assert recording_server.paths() == [
        f"/{HC_UUID}/start",
        f"/{HC_UUID}",
        f"/{HC_UUID}/fail",
        f"/{HC_UUID}/fail",
    ]
    success = recording_server.requests[1]
    assert success.method == "POST"
    assert success.text.startswith("pgbackup backup success (exit 0) databases=shop")
    assert success.text.endswith("12:00:00 INFO backup started\n12:00:15 INFO backup done")
    assert "Connection refused" in recording_server.requests[2].text


def test_healthchecks_url_query_is_kept(recording_server: RecordingServer) -> None:
    config = NotifyConfig(healthcheck_url=Secret(f"{recording_server.url}/ping/key/slug?create=1"))
    assert start_all(build_notifiers(config, FAST)) == 0
    (request,) = recording_server.requests
    assert (request.path, request.query) == ("/ping/key/slug/start", "create=1")


def test_healthchecks_body_is_truncated_to_10_kb_keeping_the_end() -> None:
    lines = tuple(f"line {i:05d} " + "x" * 90 for i in range(1000))
    body = ping_body(report("failure", log_tail=lines))
    assert len(body) <= MAX_BODY_BYTES
    text = body.decode()
    assert text.startswith("pgbackup backup failure")
    assert "[... earlier lines truncated]" in text
    assert text.endswith(lines[-1])
    assert lines[0] not in text
    # Every kept line is whole.
    kept = text.split("[... earlier lines truncated]\n")[1].splitlines()
    assert all(line in lines for line in kept)


def test_healthchecks_body_keeps_utf8_whole() -> None:
    body = ping_body(report(log_tail=tuple("é" * 300 for _ in range(100))), limit=2000)
    body.decode()  # no split character


def test_start_ping_failure_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    config = NotifyConfig(healthcheck_url=Secret(f"{closed_port_url()}/{HC_UUID}"))
    assert start_all(build_notifiers(config, FAST)) == 1
    logged = all_log_text(caplog)
    assert "start ping failed" in logged
    assert HC_UUID not in logged


def test_start_without_healthcheck_url_sends_nothing(recording_server: RecordingServer) -> None:
    config = NotifyConfig(
        telegram_bot_token=Secret("123:abc"),
        telegram_chat_id="42",
        telegram_api_url=recording_server.url,
        webhook_urls=(Secret(f"{recording_server.url}/hook"),),
    )
    notifiers = build_notifiers(config, FAST)
    assert len(notifiers) == 2
    assert start_all(notifiers) == 0
    assert recording_server.requests == []


# ---- send_all --------------------------------------------------------------------------------


def test_notify_on_failure_skips_success_messages_but_not_heartbeats(
    recording_server: RecordingServer,
) -> None:
    notifiers = build_notifiers(notify_config(recording_server), FAST)
    assert send_all(notifiers, report(), "failure") == 0
    assert recording_server.paths() == [f"/{HC_UUID}"]
    assert send_all(notifiers, report("failure"), "failure") == 0
    assert send_all(notifiers, partial_report(), "failure") == 0
    assert (
        recording_server.paths()[1:]
        == [
            TELEGRAM_PATH,
            WEBHOOK_SECRET_PATH,
            f"/{HC_UUID}/fail",
        ]
        * 2
    )


def test_notify_on_failure_still_sends_the_recovery(recording_server: RecordingServer) -> None:
    notifiers = build_notifiers(notify_config(recording_server), FAST)
    assert send_all(notifiers, report(previous_failures=2), "failure") == 0
    assert recording_server.paths() == [TELEGRAM_PATH, WEBHOOK_SECRET_PATH, f"/{HC_UUID}"]
    assert recording_server.requests_to(WEBHOOK_SECRET_PATH)[0].json()["event"] == "recovery"


@pytest.mark.parametrize("notify_on", ["always", "failure"])
def test_a_verify_that_passed_is_no_heartbeat(
    recording_server: RecordingServer, notify_on: str
) -> None:
    """HEALTHCHECK_URL is the backup's heartbeat: a verify's success never pings it up."""
    notifiers = build_notifiers(notify_config(recording_server), FAST)
    verify_ok = report(command="verify", results=())
    assert send_all(notifiers, verify_ok, notify_on) == 0
    expected = [TELEGRAM_PATH, WEBHOOK_SECRET_PATH] if notify_on == "always" else []
    assert recording_server.paths() == expected
    assert send_all(notifiers, report("failure", command="verify"), notify_on) == 0
    assert recording_server.paths()[-1] == f"/{HC_UUID}/fail"


def test_the_language_and_zone_reach_every_channel(recording_server: RecordingServer) -> None:
    config = notify_config(
        recording_server, language="fr", timezone="Europe/Paris", mention="@alice"
    )
    notifiers = build_notifiers(config, FAST)
    escalated = report("failure", consecutive_failures=2)
    assert send_all(notifiers, escalated, "always") == 0
    text = recording_server.requests_to(TELEGRAM_PATH)[0].json()["text"]
    assert text.startswith("@alice <b>🚨 Backup PostgreSQL : 2e échec consécutif</b>")
    assert "📅 Date : 2025-11-10 04:00:15 CET" in text
    hook = recording_server.requests_to(WEBHOOK_SECRET_PATH)[0].json()
    assert hook["event"] == "escalation"
    assert hook["text"].startswith("@alice 🚨 Backup PostgreSQL : 2e échec consécutif")
    # healthchecks' summary line is for machines and logs: English.
    ping = recording_server.requests_to(f"/{HC_UUID}/fail")[0]
    assert ping.text.startswith("pgbackup backup failure (exit 3)")


def test_a_500_is_retried_then_counted_while_the_others_still_send(
    recording_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    recording_server.respond(WEBHOOK_SECRET_PATH, status=500, body="oops")
    notifiers = build_notifiers(notify_config(recording_server), FAST)
    assert send_all(notifiers, report(), "always") == 1
    assert len(recording_server.requests_to(WEBHOOK_SECRET_PATH)) == FAST.attempts
    assert len(recording_server.requests_to(TELEGRAM_PATH)) == 1
    assert len(recording_server.requests_to(f"/{HC_UUID}")) == 1
    logged = all_log_text(caplog)
    assert "webhook 1 (127.0.0.1:" in logged
    assert "HTTP 500" in logged
    assert WEBHOOK_SECRET_PATH not in logged
    assert HC_UUID not in logged


def test_a_500_then_a_success_counts_as_sent(recording_server: RecordingServer) -> None:
    recording_server.respond(WEBHOOK_SECRET_PATH, status=503, times=2)
    notifiers = build_notifiers(notify_config(recording_server), FAST)
    assert send_all(notifiers, report(), "always") == 0
    assert len(recording_server.requests_to(WEBHOOK_SECRET_PATH)) == 3


def test_a_4xx_is_not_retried(recording_server: RecordingServer) -> None:
    recording_server.respond(WEBHOOK_SECRET_PATH, status=404, body="no such hook")
    notifiers = build_notifiers(notify_config(recording_server), FAST)
    assert send_all(notifiers, report(), "always") == 1
    assert len(recording_server.requests_to(WEBHOOK_SECRET_PATH)) == 1


def test_a_hanging_notifier_times_out_and_the_others_still_send(
    recording_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    recording_server.hang(TELEGRAM_PATH, seconds=30)
    delivery = replace(FAST, timeout_s=0.3)
    notifiers = build_notifiers(notify_config(recording_server), delivery)
    began = time.monotonic()
    assert send_all(notifiers, report("failure"), "always") == 1
    assert time.monotonic() - began < 5
    # A read timeout is not resent: the message may have gone through already.
    assert len(recording_server.requests_to(TELEGRAM_PATH)) == 1
    assert len(recording_server.requests_to(WEBHOOK_SECRET_PATH)) == 1
    assert len(recording_server.requests_to(f"/{HC_UUID}/fail")) == 1
    logged = all_log_text(caplog)
    assert "no answer within 0.3 s" in logged
    assert TOKEN not in logged


def test_an_unexpected_error_in_a_notifier_never_stops_the_others(
    recording_server: RecordingServer,
) -> None:
    class Broken:
        name = "broken"

        def send(self, report: RunReport) -> None:
            raise RuntimeError("bug")

    healthchecks = HealthchecksNotifier(Secret(f"{recording_server.url}/{HC_UUID}"), FAST)
    assert send_all([Broken(), healthchecks], report(), "always") == 1
    assert recording_server.paths() == [f"/{HC_UUID}"]


def test_no_configuration_means_no_notifier() -> None:
    assert build_notifiers(NotifyConfig()) == []
    assert send_all([], report(), "always") == 0


def test_telegram_without_chat_id_is_not_built() -> None:
    assert build_notifiers(NotifyConfig(telegram_bot_token=Secret(TOKEN))) == []
