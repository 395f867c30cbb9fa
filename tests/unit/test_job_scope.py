"""What the job's databases are (``backup/job/scope.py``): the one answer the backup run,
retention, ``status`` and the cleanups share; pure code for the listed databases."""

from __future__ import annotations

from backup.config import load
from backup.config.scale import shard_of
from backup.job import scope
from backup.manifest import Scope

SERVER = ["app", "billing", "scratch", "audit", "reports", "postgres"]


def test_a_named_list_is_the_job_without_the_globals():
    config = load({"BACKUP_DATABASES": "app,billing"})
    assert scope.configured_scope(config) == Scope(frozenset({"app", "billing"}), globals=False)
    assert not scope.owns_globals(config)


def test_all_is_the_server_less_the_excluded_and_the_globals():
    config = load({"BACKUP_DATABASES": "all", "BACKUP_EXCLUDE_DATABASES": "scratch,postgres"})
    assert scope.share_of(config, SERVER) == ["app", "billing", "audit", "reports"]
    assert scope.scope_of(config, SERVER) == Scope(
        frozenset({"app", "billing", "audit", "reports"}), globals=True
    )


def test_each_shard_keeps_its_share_in_the_server_order_and_shard_0_the_globals():
    env = {"BACKUP_DATABASES": "all", "BACKUP_SHARDS": "3", "BACKUP_EXCLUDE_DATABASES": "scratch"}
    shares = []
    for index in range(3):
        config = load({**env, "BACKUP_SHARD_INDEX": str(index)})
        share = scope.share_of(config, SERVER)
        assert share == [d for d in SERVER if d != "scratch" and shard_of(d, 3) == index]
        assert scope.scope_of(config, SERVER).globals == (index == 0)
        shares += share
    assert sorted(shares) == sorted(d for d in SERVER if d != "scratch")


def test_a_named_list_is_sharded_too():
    env = {"BACKUP_DATABASES": ",".join(SERVER), "BACKUP_SHARDS": "2", "BACKUP_SHARD_INDEX": "1"}
    config = load(env)
    expected = frozenset(d for d in SERVER if shard_of(d, 2) == 1)
    assert scope.configured_scope(config) == Scope(expected, globals=False)
