"""Metrics from the report and the state, pushed to a real Pushgateway, written to a file."""

from __future__ import annotations

import base64
import logging
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from backup import metrics as metrics_module
from backup.config import MetricsConfig
from backup.job import history
from backup.job.outcome import DatabaseResult, DestinationResult, RunReport, VerifyOutcome
from backup.metrics import DEFINITIONS, Metrics
from backup.storage.local import LocalStorage
from tests.fixtures import http as http_fixtures
from tests.fixtures import pushgateway as pushgateway_fixtures
from tests.fixtures.http import RecordingServer
from tests.fixtures.pushgateway import Pushgateway

# The fixtures, made visible to this module (pytest_plugins belongs to the root conftest only).
recording_server = http_fixtures.recording_server
pushgateway = pushgateway_fixtures.pushgateway

START = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)
HOST = "db.internal:5432"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str, **required: str) -> Samples:
    """name + labels -> value, for the samples whose labels include ``required``."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in required.items()):
                labels = {
                    k: v for k, v in sample.labels.items() if k in ("database", "destination")
                }
                found[(sample.name, frozenset(labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, database: str, destination: str) -> float:
    return found[(name, frozenset({"database": database, "destination": destination}.items()))]


def run(
    status: str,
    at: datetime,
    destinations: list[str],
    failed: tuple[str, ...] = (),
    size_bytes: int = 2_340_000,
) -> RunReport:
    ok = status != "failure"
    result = DatabaseResult(
        database="shop",
        status=status,
        name=f"shop-{at:%Y%m%dT%H%M%SZ}" if ok else None,
        size_bytes=size_bytes if ok else 0,
        duration_s=14.5,
        destinations=tuple(DestinationResult(u, ok and u not in failed) for u in destinations),
        error=None if ok else "pg_dump failed",
    )
    return RunReport(
        command="backup",
        status=status,
        exit_code={"success": 0, "failure": 3, "partial": 6}[status],
        started_at=at,
        finished_at=at + timedelta(seconds=15),
        host=HOST,
        results=(result,),
    )


def record_all(storages: list[LocalStorage], report: RunReport) -> dict[str, history.State]:
    return {s.url: history.record(s, report) for s in storages}


@pytest.fixture
def storages(tmp_path: Path) -> list[LocalStorage]:
    return [LocalStorage(tmp_path / name, url=f"file://{tmp_path / name}") for name in ("a", "b")]


def test_every_metric_is_defined_once_in_a_fresh_registry() -> None:
    first, second = Metrics(), Metrics()  # a shared registry would refuse the second
    assert first.registry is not second.registry
    assert set(first.gauges) == set(DEFINITIONS)
    assert set(DEFINITIONS) == {
        "pgbackup_last_success_timestamp_seconds",
        "pgbackup_last_run_timestamp_seconds",
        "pgbackup_last_run_success",
        "pgbackup_last_duration_seconds",
        "pgbackup_last_size_bytes",
        "pgbackup_consecutive_failures",
    }
    global_names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith("pgbackup") for name in global_names)


def test_a_successful_run(storages: list[LocalStorage]) -> None:
    urls = [s.url for s in storages]
    report = run("success", START, urls)
    found = samples(Metrics.from_report(report, record_all(storages, report)).text())
    finished = (START + timedelta(seconds=15)).timestamp()
    for url in urls:
        assert value(found, "pgbackup_last_success_timestamp_seconds", "shop", url) == finished
        assert value(found, "pgbackup_last_run_timestamp_seconds", "shop", url) == finished
        assert value(found, "pgbackup_last_run_success", "shop", url) == 1
        assert value(found, "pgbackup_last_duration_seconds", "shop", url) == 14.5
        assert value(found, "pgbackup_last_size_bytes", "shop", url) == 2_340_000
        assert value(found, "pgbackup_consecutive_failures", "shop", url) == 0
    assert len(found) == 6 * 2


def test_the_last_success_survives_failed_runs(storages: list[LocalStorage]) -> None:
    urls = [s.url for s in storages]
    first = run("success", START, urls, size_bytes=1_000_000)
    record_all(storages, first)
    record_all(storages, run("failure", START + timedelta(days=1), urls))
    last = run("failure", START + timedelta(days=2), urls)
    found = samples(Metrics.from_report(last, record_all(storages, last)).text())
    url = urls[0]
    assert (
        value(found, "pgbackup_last_success_timestamp_seconds", "shop", url)
        == (START + timedelta(seconds=15)).timestamp()
    )
    assert (
        value(found, "pgbackup_last_run_timestamp_seconds", "shop", url)
        == (START + timedelta(days=2, seconds=15)).timestamp()
    )
    assert value(found, "pgbackup_last_run_success", "shop", url) == 0
    assert value(found, "pgbackup_consecutive_failures", "shop", url) == 2
    assert value(found, "pgbackup_last_size_bytes", "shop", url) == 1_000_000  # the last good one


def test_a_partial_run_is_told_per_destination(storages: list[LocalStorage]) -> None:
    good, bad = (s.url for s in storages)
    record_all(storages, run("success", START, [good, bad]))
    partial = run("partial", START + timedelta(days=1), [good, bad], failed=(bad,))
    found = samples(Metrics.from_report(partial, record_all(storages, partial)).text())
    assert value(found, "pgbackup_last_run_success", "shop", good) == 1
    assert value(found, "pgbackup_last_run_success", "shop", bad) == 0
    assert value(found, "pgbackup_consecutive_failures", "shop", good) == 0
    assert value(found, "pgbackup_consecutive_failures", "shop", bad) == 1
    assert (
        value(found, "pgbackup_last_success_timestamp_seconds", "shop", bad)
        == (START + timedelta(seconds=15)).timestamp()
    )


def test_never_succeeded_is_a_zero_timestamp_so_freshness_alerts_fire() -> None:
    report = run("failure", START, ["file:///backups"])
    found = samples(Metrics.from_report(report).text())
    assert value(found, "pgbackup_last_success_timestamp_seconds", "shop", "file:///backups") == 0
    assert value(found, "pgbackup_consecutive_failures", "shop", "file:///backups") == 1


def test_a_run_that_reached_no_database_still_reports_the_known_ones(
    storages: list[LocalStorage],
) -> None:
    urls = [s.url for s in storages]
    record_all(storages, run("success", START, urls))
    early = RunReport(
        command="backup",
        status="failure",
        exit_code=3,
        started_at=START + timedelta(days=1),
        finished_at=START + timedelta(days=1, seconds=2),
        host=HOST,
        error="could not connect",
    )
    found = samples(Metrics.from_report(early, record_all(storages, early)).text())
    assert value(found, "pgbackup_last_run_success", "shop", urls[0]) == 0
    assert value(found, "pgbackup_consecutive_failures", "shop", urls[0]) == 1
    assert value(found, "pgbackup_last_duration_seconds", "shop", urls[0]) == 2


def test_push_to_a_real_pushgateway(pushgateway: Pushgateway, storages: list[LocalStorage]) -> None:
    urls = [s.url for s in storages]
    report = run("success", START, urls)
    metrics = Metrics.from_report(report, record_all(storages, report))
    assert metrics.push(pushgateway.url, "pgbackup") is True
    found = samples(pushgateway.metrics_text(), job="pgbackup", instance=HOST)
    finished = (START + timedelta(seconds=15)).timestamp()
    assert value(found, "pgbackup_last_success_timestamp_seconds", "shop", urls[1]) == finished
    assert value(found, "pgbackup_last_size_bytes", "shop", urls[0]) == 2_340_000
    assert value(found, "pgbackup_last_run_success", "shop", urls[0]) == 1
    assert len([key for key in found if key[0].startswith("pgbackup_")]) == 12


def test_a_push_replaces_its_own_group_and_keeps_other_jobs(pushgateway: Pushgateway) -> None:
    dest = "file:///backups"
    Metrics.from_report(run("success", START, [dest])).push(pushgateway.url, "nightly")
    Metrics.from_report(run("success", START, [dest], size_bytes=7)).push(pushgateway.url, "other")
    Metrics.from_report(run("failure", START + timedelta(days=1), [dest])).push(
        pushgateway.url, "nightly"
    )
    text = pushgateway.metrics_text()
    nightly = samples(text, job="nightly")
    other = samples(text, job="other")
    assert value(nightly, "pgbackup_last_run_success", "shop", dest) == 0
    assert value(other, "pgbackup_last_run_success", "shop", dest) == 1
    assert value(other, "pgbackup_last_size_bytes", "shop", dest) == 7


def test_push_sends_basic_auth_from_the_url_and_never_logs_it(
    recording_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = recording_server.url.replace("http://", "http://pusher:s3cret-pw@")
    assert Metrics.from_report(run("success", START, ["file:///b"])).push(url, "pgbackup")
    (request,) = recording_server.requests
    assert request.method == "POST"  # push-add: only this group's same-named metrics change
    assert request.path.startswith("/metrics/job/pgbackup/instance/")
    expected = base64.b64encode(b"pusher:s3cret-pw").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert "s3cret-pw" not in caplog.text


def test_a_failed_push_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = Metrics.from_report(run("success", START, ["file:///b"]))
    assert metrics.push(f"http://user:pw-secret@127.0.0.1:{port}", "pgbackup", timeout_s=2) is False
    assert "metrics: push to http://127.0.0.1:" in caplog.text
    assert "pw-secret" not in caplog.text


def test_metrics_file_is_written_atomically_and_parses(tmp_path: Path) -> None:
    path = tmp_path / "pgbackup.prom"
    metrics = Metrics.from_report(run("success", START, ["file:///b"]))
    assert metrics.write(str(path)) is True
    assert [p.name for p in tmp_path.iterdir()] == ["pgbackup.prom"]  # no temporary file left
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert set(families) == set(DEFINITIONS)
    assert families["pgbackup_last_size_bytes"].samples[0].value == 2_340_000
    assert families["pgbackup_last_size_bytes"].type == "gauge"


def test_a_failed_write_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics.from_report(run("success", START, ["file:///b"]))
    assert metrics.write(str(tmp_path / "missing-dir" / "pgbackup.prom")) is False
    assert "metrics: cannot write" in caplog.text


def test_publish_pushes_and_writes_as_configured(
    pushgateway: Pushgateway, tmp_path: Path, storages: list[LocalStorage]
) -> None:
    urls = [s.url for s in storages]
    report = run("success", START, urls)
    states = record_all(storages, report)
    path = tmp_path / "out.prom"
    config = MetricsConfig(pushgateway_url=pushgateway.url, metrics_file=str(path), job_name="job1")
    assert metrics_module.publish(config, report, states) == 0
    assert samples(pushgateway.metrics_text(), job="job1")
    assert samples(path.read_text())
    broken = MetricsConfig(metrics_file=str(tmp_path / "nope" / "x.prom"))
    assert metrics_module.publish(broken, report, states) == 1
    assert metrics_module.publish(MetricsConfig(), report, states) == 0


def command_run(command: str, exit_code: int) -> RunReport:
    return RunReport(
        command=command,
        status="success" if exit_code == 0 else "failure",
        exit_code=exit_code,
        started_at=START,
        finished_at=START + timedelta(seconds=3),
        host=HOST,
    )


def test_command_metrics_say_how_each_command_ended() -> None:
    found = samples(Metrics.from_command(command_run("verify", 5)).text())
    assert found == {
        ("pgbackup_command_last_run_success", frozenset()): 0,
        ("pgbackup_command_exit_code", frozenset()): 5,
        ("pgbackup_command_last_run_timestamp_seconds", frozenset()): (
            START + timedelta(seconds=3)
        ).timestamp(),
    }
    text = Metrics.from_command(command_run("prune", 0)).text()
    assert 'pgbackup_command_last_run_success{command="prune"} 1.0' in text


@pytest.mark.parametrize(
    ("metrics_file", "expected"),
    [
        ("/var/lib/node_exporter/pgbackup.prom", "/var/lib/node_exporter/pgbackup.verify.prom"),
        ("/tmp/metrics", "/tmp/metrics.verify.prom"),
    ],
)
def test_each_command_writes_a_file_of_its_own(metrics_file: str, expected: str) -> None:
    assert metrics_module.command_metrics_file(metrics_file, "verify") == expected


def test_a_command_never_replaces_the_backups_series(
    pushgateway: Pushgateway, storages: list[LocalStorage], tmp_path: Path
) -> None:
    """A push-add replaces whole families within a group: each command has a group of its own,
    and a file of its own next to METRICS_FILE."""
    metrics_file = tmp_path / "pgbackup.prom"
    config = MetricsConfig(pushgateway_url=pushgateway.url, metrics_file=str(metrics_file))
    urls = [s.url for s in storages]
    report = run("success", START, urls)
    assert metrics_module.publish(config, report, record_all(storages, report)) == 0
    backup_file = metrics_file.read_text()
    for command, exit_code in (("backup", 0), ("verify", 5), ("status", 1)):
        assert metrics_module.publish_command(config, command_run(command, exit_code)) == 0
    assert metrics_file.read_text() == backup_file
    pushed = pushgateway.metrics_text()
    found = samples(pushed, job="pgbackup", instance=HOST)
    assert value(found, "pgbackup_last_run_success", "shop", urls[0]) == 1
    codes = {
        sample.labels["command"]: sample.value
        for family in text_string_to_metric_families(pushed)
        for sample in family.samples
        if sample.name == "pgbackup_command_exit_code"
    }
    assert codes == {"backup": 0, "verify": 5, "status": 1}
    verify_file = (tmp_path / "pgbackup.verify.prom").read_text()
    assert 'pgbackup_command_exit_code{command="verify"} 5.0' in verify_file


def verify_run(
    exit_code: int,
    at: datetime = START,
    database: str = "shop",
    destination: str = "file:///backups",
    restore_seconds: float | None = 42.5,
) -> RunReport:
    """A verify run of ``database``'s backup read from ``destination``."""
    return replace(
        command_run("verify", exit_code),
        finished_at=at + timedelta(seconds=60),
        verify=VerifyOutcome(
            name=f"{database}-20251110T030000Z",
            database=database,
            destination=destination,
            size_bytes=2_340_000,
            tables=4,
            restore_test=restore_seconds is not None,
            restore_seconds=restore_seconds if exit_code == 0 else None,
        ),
    )


VERIFY_NAMES = (
    "pgbackup_last_verify_success",
    "pgbackup_last_verify_success_timestamp_seconds",
    "pgbackup_last_restore_test_seconds",
)


def verify_values(text: str, database: str = "shop", destination: str = "file:///backups"):
    found = samples(text)
    return {
        name: found.get(
            (name, frozenset({"database": database, "destination": destination}.items()))
        )
        for name in VERIFY_NAMES
    }


def test_a_verify_that_passed_says_when_and_how_long_the_restore_took() -> None:
    text = Metrics.from_verify(verify_run(0)).text()
    assert verify_values(text) == {
        "pgbackup_last_verify_success": 1,
        "pgbackup_last_verify_success_timestamp_seconds": (
            START + timedelta(seconds=60)
        ).timestamp(),
        "pgbackup_last_restore_test_seconds": 42.5,
    }
    without_restore = Metrics.from_verify(verify_run(0, restore_seconds=None)).text()
    assert "pgbackup_last_restore_test_seconds" not in without_restore


def test_a_failed_verify_sends_only_its_failure() -> None:
    """Families it does not send keep their value in the Pushgateway group: not even their
    HELP line goes, so a push-add cannot erase them."""
    text = Metrics.from_verify(verify_run(5)).text()
    assert verify_values(text)["pgbackup_last_verify_success"] == 0
    assert "pgbackup_last_verify_success_timestamp_seconds" not in text
    assert "pgbackup_last_restore_test_seconds" not in text


def test_verify_keeps_its_last_success_across_failures_in_the_pushgateway_and_the_file(
    pushgateway: Pushgateway, tmp_path: Path
) -> None:
    directory = tmp_path / "textfiles"
    directory.mkdir()
    metrics_file = directory / "pgbackup.prom"
    config = MetricsConfig(pushgateway_url=pushgateway.url, metrics_file=str(metrics_file))
    passed_at = (START + timedelta(seconds=60)).timestamp()
    assert metrics_module.publish_command(config, verify_run(0)) == 0
    other = verify_run(0, START + timedelta(hours=1), database="crm", restore_seconds=7.0)
    assert metrics_module.publish_command(config, other) == 0
    failed = verify_run(5, START + timedelta(days=7))
    assert metrics_module.publish_command(config, failed) == 0

    verify_file = (directory / "pgbackup.verify.prom").read_text()
    for text in (pushgateway.metrics_text(), verify_file):
        assert verify_values(text) == {
            "pgbackup_last_verify_success": 0,
            "pgbackup_last_verify_success_timestamp_seconds": passed_at,
            "pgbackup_last_restore_test_seconds": 42.5,
        }
        assert verify_values(text, database="crm") == {
            "pgbackup_last_verify_success": 1,
            "pgbackup_last_verify_success_timestamp_seconds": (
                START + timedelta(hours=1, seconds=60)
            ).timestamp(),
            "pgbackup_last_restore_test_seconds": 7.0,
        }
    assert 'pgbackup_command_exit_code{command="verify"} 5.0' in verify_file
    assert not metrics_file.exists()  # the backup's file is not the verify's
    assert [p.name for p in directory.iterdir()] == ["pgbackup.verify.prom"]


def test_a_verify_file_that_does_not_parse_starts_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "pgbackup.verify.prom").write_text("this is { not metrics\n")
    config = MetricsConfig(metrics_file=str(tmp_path / "pgbackup.prom"))
    assert metrics_module.publish_command(config, verify_run(5)) == 0
    text = (tmp_path / "pgbackup.verify.prom").read_text()
    assert verify_values(text)["pgbackup_last_verify_success"] == 0
    assert "does not parse" in caplog.text


def test_a_verify_that_never_knew_its_backup_publishes_only_the_command() -> None:
    report = command_run("verify", 2)
    with pytest.raises(ValueError):
        Metrics.from_verify(report)


def test_verify_series_never_share_a_name_with_the_backups() -> None:
    assert not set(metrics_module.VERIFY_DEFINITIONS) & set(DEFINITIONS)
    assert not set(metrics_module.VERIFY_DEFINITIONS) & set(metrics_module.COMMAND_DEFINITIONS)
