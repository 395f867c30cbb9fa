"""The run history in ``_state/status.json``, on a real LocalStorage in tmp_path."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup.job import history
from backup.job.history import MAX_RUNS, STATE_KEY, State
from backup.job.outcome import DatabaseResult, DestinationResult, RunReport
from backup.storage.local import LocalStorage

START = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)


def storage_at(path: Path) -> LocalStorage:
    return LocalStorage(path, url=f"file://{path}")


def run(
    status: str, at: datetime = START, destinations: tuple[DestinationResult, ...] = ()
) -> RunReport:
    """A run of database ``shop``; ``destinations`` default to none listed."""
    ok = status != "failure"
    result = DatabaseResult(
        database="shop",
        status=status,
        name=f"shop-{at:%Y%m%dT%H%M%SZ}" if ok else None,
        size_bytes=1000 if ok else 0,
        duration_s=3.0,
        destinations=destinations,
        error=None if ok else "pg_dump: error: connection refused",
    )
    return RunReport(
        command="backup",
        status=status,
        exit_code={"success": 0, "failure": 3, "partial": 6}[status],
        started_at=at,
        finished_at=at + timedelta(seconds=5),
        host="db:5432",
        results=(result,),
        error=result.error,
    )


def test_missing_state_is_empty(tmp_path: Path) -> None:
    assert history.load(storage_at(tmp_path)) == State()


def test_record_writes_the_state_file_under_the_prefix(tmp_path: Path) -> None:
    storage = storage_at(tmp_path)
    new = history.record(storage, run("success"))
    document = json.loads((tmp_path / "_state" / "status.json").read_text())
    assert document["consecutive_failures"] == 0
    assert document["last_success_at"] == "2025-11-10T03:00:05Z"
    assert document["databases"]["shop"]["last_backup"] == "shop-20251110T030000Z"
    assert document["runs"][0]["status"] == "success"
    assert history.load(storage) == new


def test_consecutive_failures_count_and_reset(tmp_path: Path) -> None:
    storage = storage_at(tmp_path)
    statuses = ["success", "failure", "failure", "partial", "success", "failure"]
    counts = []
    for i, status in enumerate(statuses):
        counts.append(
            history.record(storage, run(status, START + timedelta(days=i))).consecutive_failures
        )
    assert counts == [0, 1, 2, 3, 0, 1]
    final = history.load(storage)
    assert final.consecutive_failures == 1
    assert final.last_success_at == START + timedelta(days=4, seconds=5)
    assert final.databases["shop"].consecutive_failures == 1
    assert final.databases["shop"].last_success_at == START + timedelta(days=4, seconds=5)
    assert final.databases["shop"].last_backup == "shop-20251114T030000Z"


def test_only_the_last_20_runs_are_kept(tmp_path: Path) -> None:
    storage = storage_at(tmp_path)
    for i in range(25):
        history.record(storage, run("failure" if i % 3 else "success", START + timedelta(hours=i)))
    runs = history.load(storage).runs
    assert len(runs) == MAX_RUNS == 20
    assert runs[0].started_at == START + timedelta(hours=5)
    assert runs[-1].started_at == START + timedelta(hours=24)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        b'"a string"',
        b'{"runs": [{"status": "success"}]}',
        b'{"last_success_at": 12}',
        b'{"last_success_at": "yesterday"}',
        b'{"databases": {"shop": {"consecutive_failures": "many"}}}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_a_corrupt_state_is_tolerated_and_replaced(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    storage = storage_at(tmp_path)
    (tmp_path / "_state").mkdir()
    (tmp_path / "_state" / "status.json").write_bytes(content)
    assert history.load(storage) == State()
    assert "is corrupt" in caplog.text
    new = history.record(storage, run("failure"))
    assert new.consecutive_failures == 1
    assert history.load(storage) == new


def test_an_unreadable_state_is_not_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = storage_at(tmp_path)
    (tmp_path / "_state" / "status.json").mkdir(parents=True)  # open() fails: not a file
    loaded = history.load(storage)
    assert loaded.read_failed
    new = history.record(storage, run("failure"))
    assert new.consecutive_failures == 1
    assert (tmp_path / "_state" / "status.json").is_dir()
    assert "left as it was" in caplog.text


def test_a_write_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the destination should be")
    storage = storage_at(tmp_path / "not-a-dir")
    new = history.record(storage, run("success"), previous=State())
    assert new.consecutive_failures == 0
    assert "cannot write _state/status.json" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_each_destination_keeps_its_own_view_of_a_partial_run(tmp_path: Path) -> None:
    good, bad = storage_at(tmp_path / "good"), storage_at(tmp_path / "bad")
    for storage in (good, bad):
        history.record(storage, run("success", START, (DestinationResult(storage.url, True),)))
    partial = run(
        "partial",
        START + timedelta(days=1),
        (DestinationResult(good.url, True), DestinationResult(bad.url, False, "AccessDenied")),
    )
    after_good, after_bad = history.record(good, partial), history.record(bad, partial)
    # The run as a whole failed in both...
    assert after_good.consecutive_failures == after_bad.consecutive_failures == 1
    assert after_good.last_success_at == after_bad.last_success_at == START + timedelta(seconds=5)
    # ...but only one destination lacks the new backup.
    assert after_good.databases["shop"].last_success_at == START + timedelta(days=1, seconds=5)
    assert after_good.databases["shop"].consecutive_failures == 0
    assert after_bad.databases["shop"].last_success_at == START + timedelta(seconds=5)
    assert after_bad.databases["shop"].consecutive_failures == 1
    assert after_bad.runs[-1].results[0]["stored"] is False
    assert after_good.runs[-1].results[0]["stored"] is True


def test_a_run_that_failed_before_any_database_counts_for_every_known_one(
    tmp_path: Path,
) -> None:
    storage = storage_at(tmp_path)
    history.record(storage, run("success"))
    early = replace(run("failure"), results=(), error="could not connect")
    after = history.record(storage, early)
    assert after.databases["shop"].consecutive_failures == 1
    assert after.databases["shop"].last_status == "failure"
    assert after.runs[-1].error == "could not connect"


def test_report_counters_come_from_the_states_at_the_start() -> None:
    last = START - timedelta(days=3)
    states = [
        State(consecutive_failures=2, last_success_at=last),
        State(consecutive_failures=0, last_success_at=last + timedelta(days=1)),
    ]
    assert history.failures_in_a_row(states, "failure") == 3
    assert history.failures_in_a_row(states, "partial") == 3
    assert history.failures_in_a_row(states, "success") == 0
    assert history.failures_in_a_row([], "failure") == 1
    assert history.last_success(states) == last + timedelta(days=1)
    assert history.last_success([State()]) is None


def test_the_state_file_is_not_a_backup(tmp_path: Path) -> None:
    storage = storage_at(tmp_path)
    history.record(storage, run("success"))
    keys = [o.key for o in storage.list()]
    assert keys == [STATE_KEY]
    assert not [k for k in keys if k.endswith(".manifest.json")]


def test_json_round_trip_keeps_everything(tmp_path: Path) -> None:
    storage = storage_at(tmp_path)
    for i, status in enumerate(["success", "partial", "failure"]):
        written = history.record(storage, run(status, START + timedelta(days=i)))
    assert State.from_json(written.to_json()) == written
    assert history.load(storage) == written
