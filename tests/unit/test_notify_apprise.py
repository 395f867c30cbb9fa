"""NOTIFY_URLS through apprise: the splitting rule, validation before anything runs, what apprise
sends (json://, ntfy:// to a local recording HTTP server; mailto:// to a local SMTP server),
notify types and escalation, timeouts, retries, and secrets kept out of the log."""

from __future__ import annotations

import logging
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup import config as config_module
from backup.config import NotifyConfig, Secret, notify_urls
from backup.config.environment import parse_for_reports
from backup.errors import ConfigError
from backup.job.outcome import DatabaseResult, DestinationResult, RunReport
from backup.log import Redactor
from backup.notify import Delivery, NotificationFailed, build_notifiers, send_all
from backup.notify.apprise_urls import ESCALATION_MARK, AppriseNotifier
from backup.notify.message import format_message
from tests.fixtures import http as http_fixtures
from tests.fixtures import smtp as smtp_fixtures
from tests.fixtures.http import RecordingServer
from tests.fixtures.smtp import SmtpServer

recording_server = http_fixtures.recording_server
smtp_server = smtp_fixtures.smtp_server

START = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)
FAST = Delivery(timeout_s=2.0, attempts=3, backoff_s=0.01)
TOKEN_PATH = "/hooks/apprise-secret-token-path"
TOPIC = "backupsecrettopic"


def report(status: str = "success", consecutive_failures: int = 0) -> RunReport:
    ok = status != "failure"
    destination = DestinationResult("file:///backups", ok, None if ok else "upload failed")
    result = DatabaseResult(
        database="shop",
        status=status,
        name="shop-20251110T030000Z" if ok else None,
        size_bytes=2_340_000 if ok else 0,
        raw_bytes=12_450_000 if ok else 0,
        duration_s=14.9,
        destinations=(destination,),
        error=None if ok else "pg_dump: error: connection to server failed",
    )
    return RunReport(
        command="backup",
        status=status,
        exit_code={"success": 0, "failure": 3, "partial": 6}[status],
        started_at=START,
        finished_at=START + timedelta(seconds=15.4),
        host="db.internal:5432",
        results=(result,),
        error=result.error,
        consecutive_failures=consecutive_failures,
        manual_command="python entrypoint.py backup",
    )


def notifier(url: str, delivery: Delivery = FAST, index: int = 1) -> AppriseNotifier:
    return AppriseNotifier(Secret(url), delivery, index)


def json_url(server: RecordingServer, path: str = TOKEN_PATH) -> str:
    return server.url.replace("http://", "json://") + path


def base_env(**extra: str) -> dict[str, str]:
    return {"PGDATABASE": "shop", "BACKUP_DESTINATIONS": "file:///tmp/pgbackup-test", **extra}


# The splitting rule


@pytest.mark.parametrize(
    ("value", "entries"),
    [
        ("json://a/x", ["json://a/x"]),
        ("json://a/x,ntfy://b/t", ["json://a/x", "ntfy://b/t"]),
        ("json://a/x, ntfy://b/t ;  gotify://c/t", ["json://a/x", "ntfy://b/t", "gotify://c/t"]),
        ("json://a/x\nntfy://b/t\n", ["json://a/x", "ntfy://b/t"]),
        (
            "mailto://u:p@h?to=a@x.com,b@x.com,slack://A/B/C",
            ["mailto://u:p@h?to=a@x.com,b@x.com", "slack://A/B/C"],
        ),
        ("mailto://u:p@h?to=a@x.com, b@x.com", ["mailto://u:p@h?to=a@x.com", "b@x.com"]),
        ("json://a/x,, oops", ["json://a/x", "oops"]),
        (" , ;\n", []),
    ],
)
def test_entries_split_only_before_a_scheme(value: str, entries: list[str]) -> None:
    assert notify_urls.split(value) == entries


# Validation before anything runs


def test_valid_urls_are_read_in_order() -> None:
    urls = "json://127.0.0.1:9/x, ntfy://127.0.0.1:9/topic\nmailto://u:p@example.com"
    config = config_module.load(base_env(NOTIFY_URLS=urls))
    assert [u.reveal() for u in config.notify.apprise_urls] == notify_urls.split(urls)


def test_urls_from_a_file_one_per_line(tmp_path) -> None:
    path = tmp_path / "notify_urls"
    path.write_text("json://127.0.0.1:9/one\n\nntfy://127.0.0.1:9/two\n")
    config = config_module.load(base_env(NOTIFY_URLS_FILE=str(path)))
    assert [u.reveal() for u in config.notify.apprise_urls] == [
        "json://127.0.0.1:9/one",
        "ntfy://127.0.0.1:9/two",
    ]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            "nosuchservice://tok3n-Secret-value/x",
            "NOTIFY_URLS entry 2 (nosuchservice://) is not a scheme apprise knows",
        ),
        (
            "slack://tok3n-Secret-value",
            "NOTIFY_URLS entry 2 (slack://) is not a URL apprise accepts",
        ),
        ("tok3n-Secret-value", "NOTIFY_URLS entry 2 does not start with a scheme"),
        # An email to an IP address needs from=: apprise's reason is relayed, the password not.
        (
            "mailto://user:tok3n-Secret-value@127.0.0.1:25?to=ops@example.com",
            "NOTIFY_URLS entry 2 (mailto://) is not a URL apprise accepts: Invalid ~From~",
        ),
    ],
)
def test_a_refused_entry_is_named_by_position_and_scheme_only(bad: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_module.load(base_env(NOTIFY_URLS=f"json://127.0.0.1:9/ok, {bad}"))
    text = f"{error.value} {error.value.hint}"
    assert expected in text
    assert "tok3n-Secret-value" not in text
    assert "apprise -vv" in (error.value.hint or "")


def test_a_configuration_error_report_keeps_the_accepted_urls() -> None:
    env = base_env(
        NOTIFY_URLS="json://127.0.0.1:9/ok, nosuch://x, ntfy://127.0.0.1:9/t",
        BACKUP_COMPRESSION="bogus",
    )
    with pytest.raises(ConfigError):
        config_module.load(env)
    settings = parse_for_reports(env)
    assert [u.reveal() for u in settings.notify.apprise_urls] == [
        "json://127.0.0.1:9/ok",
        "ntfy://127.0.0.1:9/t",
    ]


def test_every_url_and_its_token_parts_are_secrets() -> None:
    url = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"
    mail = "mailto://mailer:pa55-word@smtp.example.com:587?to=ops@example.com"
    ntfy = f"ntfys://ntfy.example.com/{TOPIC}?priority=high"
    config = config_module.load(base_env(NOTIFY_URLS=f"{url},{mail},{ntfy}"))
    secrets = config.secrets()
    expected = {url, mail, ntfy, "T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ", TOPIC}
    assert expected | {"pa55-word"} <= set(secrets)
    # Host names, email domains and apprise's own words stay readable in the log.
    for word in ("smtp.example.com", "example.com", "ntfy.example.com", "priority"):
        assert word not in secrets
    line = Redactor(secrets).redact("POST /services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ")
    assert line == "POST /services/***/***/***"


# What apprise sends


def test_json_target_gets_title_message_and_type(recording_server: RecordingServer) -> None:
    target = notifier(json_url(recording_server))
    assert target.name == f"apprise 1 (JSON {recording_server.url.removeprefix('http://')})"
    target.send(report("success"))
    [request] = recording_server.requests_to(TOKEN_PATH)
    assert request.method == "POST"
    assert request.headers["Content-Type"].startswith("application/json")
    sent = request.json()
    text = format_message(report("success"), html=False)
    title, _, body = text.partition("\n")
    assert sent["title"] == title == "✅ PostgreSQL backup succeeded"
    assert sent["message"] == body.strip("\n")
    assert "🗄️ Database: shop" in sent["message"] and "🔄 Retention: 30 days" in sent["message"]
    assert sent["type"] == "success"


@pytest.mark.parametrize(
    ("status", "failures", "expected_type", "marked"),
    [
        ("success", 0, "success", False),
        ("partial", 0, "warning", False),
        ("failure", 1, "failure", False),
        ("partial", 2, "failure", True),  # escalated: ALERT_AFTER_FAILURES=2 reached
        ("failure", 3, "failure", True),
    ],
)
def test_notify_type_and_escalation_mark(
    recording_server: RecordingServer, status: str, failures: int, expected_type: str, marked: bool
) -> None:
    notifier(json_url(recording_server)).send(report(status, failures))
    [request] = recording_server.requests_to(TOKEN_PATH)
    assert request.json()["type"] == expected_type
    assert request.json()["title"].startswith(ESCALATION_MARK) is marked


def test_ntfy_escalation_is_sent_at_max_priority(recording_server: RecordingServer) -> None:
    url = recording_server.url.replace("http://", "ntfy://") + f"/{TOPIC}"
    target = notifier(url)
    assert target.name == f"apprise 1 (ntfy {recording_server.url.removeprefix('http://')})"
    target.send(report("failure", 1))
    target.send(report("failure", 2))
    first, escalated = recording_server.requests_to("/")
    assert first.json()["topic"] == TOPIC
    assert first.json()["title"] == "❌ PostgreSQL backup failed"
    assert "X-Priority" not in first.headers
    assert escalated.headers["X-Priority"] == "max"
    # A priority written in the URL is the user's choice, escalated or not.
    notifier(f"{url}?priority=low").send(report("failure", 2))
    assert recording_server.requests_to("/")[-1].headers["X-Priority"] == "low"


def test_ntfy_topic_in_host_position_is_not_shown() -> None:
    assert notifier(f"ntfy://{TOPIC}").name == "apprise 1 (ntfy)"
    slack = notifier("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", index=3)
    assert slack.name == "apprise 3 (Slack)"


def test_email_arrives_with_the_title_as_subject(smtp_server: SmtpServer) -> None:
    url = smtp_server.url(to="ops@example.com,dba@example.com")
    target = notifier(url)
    assert target.name == f"apprise 1 (E-Mail 127.0.0.1:{smtp_server.port})"
    target.send(report("failure", 1))
    assert set(smtp_server.logins) == {(smtp_fixtures.USER, smtp_fixtures.PASSWORD)}
    # apprise sends one message per recipient; a comma in the query kept them in one entry.
    assert sorted(rcpt for mail in smtp_server.messages for rcpt in mail.rcpt_tos) == [
        "dba@example.com",
        "ops@example.com",
    ]
    for mail in smtp_server.messages:
        assert mail.subject == "❌ PostgreSQL backup failed"
        assert mail.mail_from == smtp_fixtures.FROM
        assert "pg_dump: error: connection to server failed" in mail.text
        assert "python entrypoint.py backup" in mail.text


# Failures: counted, bounded, logged without secrets


def test_a_500_is_retried_by_apprise_then_counted(
    recording_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    recording_server.respond(TOKEN_PATH, status=500)
    url = json_url(recording_server).replace("json://", "json://hookuser:hook-Pa55word@")
    with caplog.at_level(logging.DEBUG):
        failed = send_all([notifier(url)], report("failure", 1))
    assert failed == 1
    assert len(recording_server.requests_to(TOKEN_PATH)) == FAST.attempts
    # Our own lines only: apprise's never reach the job's handlers (pytest's caplog attaches to
    # non-propagating loggers too), and urllib3's debug lines go through the redaction.
    assert logging.getLogger("apprise").propagate is False
    ours = [r for r in caplog.records if r.name.startswith("backup")]
    [line] = [r.getMessage() for r in ours if r.levelno >= logging.ERROR]
    assert line.startswith("notify: apprise 1 (JSON 127.0.0.1:")
    assert "error=500" in line
    logged = "\n".join(r.getMessage() for r in ours)
    for secret in ("apprise-secret-token-path", "hook-Pa55word"):
        assert secret not in logged


def test_a_500_then_a_success_counts_as_sent(recording_server: RecordingServer) -> None:
    recording_server.respond(TOKEN_PATH, status=500, times=1)
    assert send_all([notifier(json_url(recording_server))], report()) == 0
    assert len(recording_server.requests_to(TOKEN_PATH)) == 2


def test_retry_in_the_url_wins(recording_server: RecordingServer) -> None:
    recording_server.respond(TOKEN_PATH, status=500)
    assert send_all([notifier(json_url(recording_server) + "?retry=0")], report()) == 1
    assert len(recording_server.requests_to(TOKEN_PATH)) == 1


def test_a_target_that_never_answers_is_bounded_by_the_timeout(
    recording_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    recording_server.hang(TOKEN_PATH, seconds=30)
    other = "/hooks/other"
    delivery = Delivery(timeout_s=0.5, attempts=2, backoff_s=0.1)
    # rto=60 in the URL is lowered to NOTIFY_TIMEOUT_SECONDS.
    targets = [
        notifier(json_url(recording_server) + "?rto=60", delivery),
        notifier(json_url(recording_server, other), delivery, index=2),
    ]
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        failed = send_all(targets, report("failure", 1))
    elapsed = time.monotonic() - started
    assert failed == 1
    assert elapsed < targets[0].deadline_s + 2.0, elapsed
    assert len(recording_server.requests_to(other)) == 1
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("backup") and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 1 and errors[0].startswith("notify: apprise 1 (JSON 127.0.0.1:")
    assert "apprise-secret-token-path" not in errors[0]


def test_an_unreachable_smtp_server_is_counted(smtp_server: SmtpServer) -> None:
    url = smtp_server.url().replace(f":{smtp_server.port}", ":1")
    assert send_all([notifier(url, Delivery(timeout_s=1, attempts=1))], report("failure")) == 1


def test_a_refused_smtp_login_is_counted_without_the_password(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = smtp_server.url(password="wrong-Smtp-pa55")
    with caplog.at_level(logging.DEBUG):
        assert send_all([notifier(url, Delivery(timeout_s=2, attempts=1))], report()) == 1
    assert smtp_server.messages == []
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("backup")]
    assert ours and "wrong-Smtp-pa55" not in "\n".join(ours)


def test_notify_urls_build_one_notifier_each(recording_server: RecordingServer) -> None:
    config = NotifyConfig(
        apprise_urls=(Secret(json_url(recording_server)), Secret(json_url(recording_server, "/b")))
    )
    targets = build_notifiers(config, FAST)
    assert [t.name.split(" (")[0] for t in targets] == ["apprise 1", "apprise 2"]
    assert send_all(targets, report()) == 0
    assert recording_server.paths() == [TOKEN_PATH, "/b"]


def test_the_docs_example_is_accepted() -> None:
    """The NOTIFY_URLS example of docs/notifications.md ("Apprise")."""
    page = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
    readme = page.read_text(encoding="utf-8")
    [example] = re.findall(r'^NOTIFY_URLS="([^"]+)"', readme, re.MULTILINE)
    config = config_module.load(base_env(NOTIFY_URLS=example))
    names = [n.name for n in build_notifiers(config.notify, FAST)]
    assert names == [
        "apprise 1 (Slack)",
        "apprise 2 (Discord)",
        "apprise 3 (ntfy ntfy.example.com)",
        "apprise 4 (E-Mail smtp.example.com:587)",
    ]


def test_timeouts_are_ours_unless_the_url_sets_shorter_ones() -> None:
    delivery = Delivery(timeout_s=5.0, attempts=2, backoff_s=0.5)
    plain = notifier("json://127.0.0.1:9/x", delivery)._plugin()
    assert (plain.socket_connect_timeout, plain.socket_read_timeout) == (5.0, 5.0)
    assert (plain.retry, plain.wait) == (1, 0.5)
    own = notifier("json://127.0.0.1:9/x?cto=2&rto=60&retry=4&wait=3", delivery)._plugin()
    assert (own.socket_connect_timeout, own.socket_read_timeout) == (2.0, 5.0)
    assert (own.retry, own.wait) == (4, 3.0)
    # email: apprise's own default (15 s) is replaced too
    mail = notifier("mailto://u:p@smtp.example.com?to=ops@example.com", delivery)._plugin()
    assert mail.socket_connect_timeout == 5.0


def test_without_apprise_installed_the_variable_is_refused(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # what Python does: import raises
    with pytest.raises(ConfigError) as error:
        config_module.load(base_env(NOTIFY_URLS="json://127.0.0.1:9/x"))
    assert "NOTIFY_URLS needs the apprise package" in str(error.value)


def test_an_url_apprise_refuses_when_sending_is_counted_not_raised() -> None:
    # The configuration refuses it; an apprise upgrade between two runs could too.
    target = notifier("slack://tok3n-Secret-value")
    assert target.name == "apprise 1"
    with pytest.raises(NotificationFailed) as error:
        target.send(report())
    assert "no longer accepts" in str(error.value) and "tok3n" not in str(error.value)
    assert send_all([target], report()) == 1


def test_a_scheme_alone_is_refused_without_being_quoted() -> None:
    with pytest.raises(ConfigError) as error:
        config_module.load(base_env(NOTIFY_URLS="json://127.0.0.1:9/x ntfys://"))
    assert "NOTIFY_URLS entry 2 is a scheme alone" in str(error.value)
    assert "ntfys" not in str(error.value)


def test_notify_on_failure_keeps_successes_from_apprise_targets(
    recording_server: RecordingServer,
) -> None:
    targets = [notifier(json_url(recording_server))]
    assert send_all(targets, report("success"), notify_on="failure") == 0
    assert recording_server.requests_to(TOKEN_PATH) == []
    assert send_all(targets, report("partial"), notify_on="failure") == 0
    assert len(recording_server.requests_to(TOKEN_PATH)) == 1
