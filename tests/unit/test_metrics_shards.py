"""A sharded job's pods push to one Pushgateway at the same time: each shard's series go to a
group of its own (``shard="<i>-of-<K>"``), so the last shard to finish does not replace the
others' per-database series. Against a real Pushgateway and real local destinations, through
the backup's own report (``reporting.tell_backup``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from backup.commands import reporting
from backup.config import load
from backup.config.scale import shard_of
from backup.job import history
from backup.job.outcome import DatabaseResult, DestinationResult
from backup.storage.local import LocalStorage
from tests.fixtures import pushgateway as pushgateway_fixtures
from tests.fixtures.pushgateway import Pushgateway

pushgateway = pushgateway_fixtures.pushgateway

START = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)


def one_per_shard() -> list[str]:
    """Two database names, the first on shard 0 and the second on shard 1 of two."""
    names = [f"tenant_{n}" for n in range(20)]
    return [next(n for n in names if shard_of(n, 2) == index) for index in (0, 1)]


def backup_of_shard(index: int, database: str, gateway: str, root: Path) -> None:
    config = load(
        {
            "PGHOST": "db.internal",
            "BACKUP_DATABASES": ",".join(one_per_shard()),
            "BACKUP_DESTINATIONS": f"file://{root}",
            "BACKUP_SHARDS": "2",
            "BACKUP_SHARD_INDEX": str(index),
            "PROMETHEUS_PUSHGATEWAY_URL": gateway,
        }
    )
    storage = LocalStorage(root, url=f"file://{root}")
    previous = {storage.url: history.load(storage, config.postgres, config.scale)}
    result = DatabaseResult(
        database=database,
        status="success",
        name=f"{database}-{START:%Y%m%dT%H%M%SZ}",
        size_bytes=1000 + index,
        duration_s=3.0,
        destinations=(DestinationResult(storage.url, True),),
    )
    reporting.tell_backup(config, [storage], [], previous, START, [result], None)


def test_each_shard_pushes_to_a_group_of_its_own(pushgateway: Pushgateway, tmp_path: Path) -> None:
    first, second = one_per_shard()
    backup_of_shard(0, first, pushgateway.url, tmp_path / "dest")
    backup_of_shard(1, second, pushgateway.url, tmp_path / "dest")
    sizes = {
        (sample.labels["database"], sample.labels.get("shard")): sample.value
        for family in text_string_to_metric_families(pushgateway.metrics_text())
        for sample in family.samples
        if sample.name == "pgbackup_last_size_bytes" and sample.labels.get("job") == "pgbackup"
    }
    # Both shards' databases survive the second push, each in its shard's group.
    assert {database for database, _ in sizes} == {first, second}
    assert sizes[(first, "0-of-2")] == 1000
    assert sizes[(second, "1-of-2")] == 1001


def test_an_unsharded_run_has_no_shard_in_its_group() -> None:
    config = load({"PGHOST": "db", "PGDATABASE": "shop", "BACKUP_DESTINATIONS": "file:///b"})
    assert reporting.shard_of_run(config) is None
