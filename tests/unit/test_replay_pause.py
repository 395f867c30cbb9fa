"""BACKUP_STANDBY_PAUSE_REPLAY (issue 23): read and validated with the rest of the
configuration; the conflict hint names both ways out. The pause itself is tested against a real
primary and standby in tests/e2e/test_standby_pause.py."""

from __future__ import annotations

import pytest

from backup.config import load
from backup.errors import ConfigError, DatabaseError
from backup.postgres.dump_failure import explain


def test_the_pause_is_off_unless_asked_for():
    assert load({"PGDATABASE": "shop"}).standby_pause_replay is False
    on = load({"PGDATABASE": "shop", "BACKUP_STANDBY_PAUSE_REPLAY": "true"})
    assert on.standby_pause_replay is True


def test_a_value_that_is_not_a_boolean_names_the_variable():
    with pytest.raises(ConfigError) as caught:
        load({"PGDATABASE": "shop", "BACKUP_STANDBY_PAUSE_REPLAY": "sometimes"})
    assert "BACKUP_STANDBY_PAUSE_REPLAY" in caught.value.message


def test_a_recovery_conflict_hint_names_both_ways_out():
    err = DatabaseError("pg_dump: error: canceling statement due to conflict with recovery")
    explain(err, wait=None, conflicts=["snapshot"], standby=True)
    assert err.hint is not None
    assert "BACKUP_STANDBY_PAUSE_REPLAY=true" in err.hint
    assert "hot_standby_feedback" in err.hint and "max_standby_streaming_delay" in err.hint
