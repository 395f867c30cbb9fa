"""BACKUP_PARALLEL_DATABASES and BACKUP_SHARDS: their validation, the shard of a database, and
what a shard owns (its scope, lock and history): pure code, plain tests."""

from __future__ import annotations

import pytest

from backup.config import ScaleConfig, load
from backup.config.scale import shard_of
from backup.errors import ConfigError
from backup.job import history, lock

BASE = {"BACKUP_DATABASES": "all"}


def _problems(**env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load({**BASE, **env})
    assert caught.value.exit_code == 2
    return caught.value.message


def test_defaults_are_one_database_at_a_time_and_no_shards():
    scale = load(BASE).scale
    assert scale == ScaleConfig(parallel_databases=1, shards=1, shard_index=None)
    assert not scale.sharded and scale.owns("anything") and scale.owns_globals


@pytest.mark.parametrize("value", ["0", "33", "two", "-1"])
def test_parallel_databases_out_of_range_is_refused(value):
    assert "BACKUP_PARALLEL_DATABASES" in _problems(BACKUP_PARALLEL_DATABASES=value)


def test_parallel_databases_is_read():
    assert load({**BASE, "BACKUP_PARALLEL_DATABASES": "4"}).scale.parallel_databases == 4


def test_the_index_comes_from_kubernetes_or_the_override():
    indexed = load({**BASE, "BACKUP_SHARDS": "4", "JOB_COMPLETION_INDEX": "2"}).scale
    assert (indexed.shards, indexed.shard_index) == (4, 2)
    assert indexed.describe() == "shard 2 of 4"
    override = {"BACKUP_SHARDS": "4", "JOB_COMPLETION_INDEX": "2", "BACKUP_SHARD_INDEX": "1"}
    assert load({**BASE, **override}).scale.shard_index == 1


def test_a_plain_indexed_job_is_not_sharded():
    scale = load({**BASE, "JOB_COMPLETION_INDEX": "3"}).scale
    assert not scale.sharded and scale.shard_index is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BACKUP_SHARDS": "4", "JOB_COMPLETION_INDEX": "4"}, "JOB_COMPLETION_INDEX=4"),
        ({"BACKUP_SHARDS": "4", "BACKUP_SHARD_INDEX": "9"}, "BACKUP_SHARD_INDEX=9"),
        ({"BACKUP_SHARD_INDEX": "1"}, "BACKUP_SHARD_INDEX is set without BACKUP_SHARDS"),
        ({"BACKUP_SHARDS": "0"}, "BACKUP_SHARDS"),
        ({"BACKUP_SHARDS": "4", "JOB_COMPLETION_INDEX": "x"}, "JOB_COMPLETION_INDEX"),
    ],
)
def test_bad_shard_settings_are_refused(env, named):
    assert named in _problems(**env)


def test_a_sharded_job_without_an_index_is_refused_by_the_commands_that_need_one():
    scale = load({**BASE, "BACKUP_SHARDS": "3"}).scale  # status and check accept it
    assert scale.owns("any") and scale.owns_globals  # without an index: the whole job
    with pytest.raises(ConfigError) as caught:
        scale.require_index()
    assert "JOB_COMPLETION_INDEX" in caught.value.message
    assert "BACKUP_SHARD_INDEX" in caught.value.message


def test_every_database_has_one_shard_and_keeps_it_when_others_are_added():
    names = [f"tenant_{n}" for n in range(500)]
    before = {name: shard_of(name, 4) for name in names}
    shares = [ScaleConfig(shards=4, shard_index=i).share(names) for i in range(4)]
    assert sorted(n for share in shares for n in share) == sorted(names)  # each exactly once
    assert all(90 < len(share) < 160 for share in shares)  # spread
    more = [*names, *(f"new_{n}" for n in range(100))]
    assert {name: shard_of(name, 4) for name in more if name in before} == before
    assert [ScaleConfig(shards=4, shard_index=0).owns_globals] + [
        ScaleConfig(shards=4, shard_index=i).owns_globals for i in (1, 2, 3)
    ] == [True, False, False, False]


def test_each_shard_has_its_own_lock_and_history():
    env = {**BASE, "BACKUP_SHARDS": "3"}
    configs = [load({**env, "BACKUP_SHARD_INDEX": str(i)}) for i in range(3)]
    keys = {lock.advisory_key(c) for c in configs} | {lock.advisory_key(load(BASE))}
    assert len(keys) == 4
    assert len({lock.local_lock_path(c) for c in configs}) == 3
    whole = history.state_key(load(BASE).postgres)
    assert [history.state_key(c.postgres, c.scale) for c in configs] == [
        whole.replace(".json", f"-shard-{i}-of-3.json") for i in range(3)
    ]
    assert history.state_key(load(BASE).postgres, load(BASE).scale) == whole
