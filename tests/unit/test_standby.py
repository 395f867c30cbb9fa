"""The pure parts of issue 19: when a standby counts as stale, what the manifest and ``check``
say about it, which hint a failed dump gets, and the manifest's ``source`` field on read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from backup.errors import DatabaseError, IntegrityError, StorageError
from backup.manifest import Manifest
from backup.postgres.dump_failure import STATEMENT_TIMEOUT_HINT, explain
from backup.postgres.locks import LockWait
from backup.postgres.standby import ReplayState, stale_problem

REPLAYED = datetime(2026, 12, 7, 3, 0, 1, tzinfo=UTC)


def test_a_primary_is_never_stale_and_says_so():
    primary = ReplayState(standby=False)
    assert stale_problem(primary, 1.0) is None
    assert primary.manifest_record() == {"standby": False}
    assert primary.describe() == "a primary (read-write)"


@pytest.mark.parametrize(
    ("lag_s", "limit_s", "stale"),
    [(0.0, 3600.0, False), (3599.0, 3600.0, False), (3601.0, 3600.0, True), (1e6, 0.0, False)],
    ids=["caught-up", "under", "over", "check-off"],
)
def test_a_standby_is_stale_above_the_limit_only(lag_s, limit_s, stale):
    state = ReplayState(True, REPLAYED, lag_s, "streaming")
    assert (stale_problem(state, limit_s) is not None) is stale


def test_unknown_lag_is_not_called_stale():
    """Nothing replayed since the standby started: no replay time to judge by."""
    assert stale_problem(ReplayState(True, None, None, "streaming"), 1.0) is None


def test_the_stale_message_names_the_limit_and_the_causes():
    state = ReplayState(True, REPLAYED, 7200.0, None, paused=True)
    problem = stale_problem(state, 3600.0)
    assert problem is not None
    assert "BACKUP_STANDBY_MAX_LAG" in problem and "2.0 h" in problem
    assert "paused" in problem and "not streaming" in problem


def test_a_standby_records_its_replay_time_and_lag():
    state = ReplayState(True, REPLAYED, 0.25, "streaming")
    assert state.manifest_record() == {
        "standby": True,
        "replay_timestamp": "2026-12-07T03:00:01+00:00",
        "replay_lag_s": 0.25,
    }
    assert "hot standby" in state.describe() and "replay lag 0 s" in state.describe()
    assert ReplayState(True).manifest_record() == {"standby": True}


def _wait(backend: str | None) -> LockWait:
    return LockWait("shop.customers", "AccessShareLock", 3.0, 42, None, None, None, backend)


def test_a_recovery_conflict_wins_over_a_lock_wait():
    err = DatabaseError("pg_dump exited with status 1: server closed the connection")
    explain(err, wait=_wait(None), conflicts=["lock"], standby=True)
    assert err.hint is not None
    assert "conflict with recovery: lock" in err.hint and "hot_standby_feedback" in err.hint


def test_the_conflict_message_alone_is_enough():
    err = DatabaseError("ERROR: canceling statement due to conflict with recovery")
    explain(err, wait=None, conflicts=[], standby=True)
    assert err.hint is not None and "max_standby_streaming_delay" in err.hint


def test_a_lock_held_by_replay_is_the_primarys():
    err = DatabaseError("pg_dump exited with status 1")
    explain(err, wait=_wait("startup"), conflicts=[], standby=True)
    assert err.hint is not None and "WAL replay" in err.hint and "shop.customers" in err.hint


def test_a_lock_held_by_a_session_names_it():
    err = DatabaseError("pg_dump exited with status 1")
    explain(err, wait=_wait("client backend"), conflicts=[], standby=False)
    assert err.hint is not None and "session 42" in err.hint


def test_a_statement_timeout_is_the_lock_wait_timeout():
    err = DatabaseError("ERROR: canceling statement due to statement timeout")
    explain(err, wait=None, conflicts=[], standby=False)
    assert err.hint == STATEMENT_TIMEOUT_HINT


def test_other_errors_keep_their_hint():
    err = StorageError("bucket gone", hint="theirs")
    explain(err, wait=_wait(None), conflicts=["lock"], standby=True)
    assert err.hint == "theirs"


def _manifest(**changes: object) -> bytes:
    created = datetime(2026, 12, 7, 3, 0, 0, tzinfo=UTC)
    record = Manifest(
        name="shop-20261207T030000Z",
        kind="database",
        database="shop",
        created_at=created,
        finished_at=created,
        object_key="shop/shop-20261207T030000Z.dump.zst",
        size_bytes=1,
        sha256="0" * 64,
        compression="zstd",
        encryption=None,
        pg_dump_version="15.18",
        server_version="15.18",
        duration_s=1.0,
        job_version="test",
        source={"standby": True, "replay_timestamp": "2026-12-07T02:59:59+00:00"},
    )
    data = json.loads(record.to_json())
    data.update(changes)
    return json.dumps(data).encode()


def test_the_manifest_keeps_its_source_and_refuses_a_wrong_one():
    assert Manifest.from_json(_manifest()).source["standby"] is True
    assert Manifest.from_json(_manifest(source={})).source == {}
    with pytest.raises(IntegrityError, match="source is not an object"):
        Manifest.from_json(_manifest(source="standby"))


def test_the_jobs_connections_probe_an_idle_flow_every_minute():
    """The lock session idles for hours: a load balancer must not drop it unnoticed."""
    from backup.config import PostgresConfig
    from backup.postgres.connection import connect_kwargs

    kwargs = connect_kwargs(PostgresConfig(host="db", port="5432", user="u"), "shop")
    assert kwargs["keepalives"] == "1" and int(kwargs["keepalives_idle"]) <= 60
    assert int(kwargs["keepalives_interval"]) * int(kwargs["keepalives_count"]) <= 60
