"""A manifest is believed only about its own backup; retention stays in the job's databases;
orphan data objects are collected. Against a real local destination (a temporary directory)."""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup import manifest
from backup.config import CodecConfig, RetentionPolicy
from backup.errors import IntegrityError
from backup.manifest import Manifest, Scope, catalog
from backup.retention import prune
from backup.storage.base import ObjectInfo
from backup.storage.local import LocalStorage
from backup.stream import codec
from backup.stream.readback import open_archive

NOW = datetime(2025, 11, 10, 3, 0, tzinfo=UTC)


def record(database: str | None, moment: datetime, compression: str = "zstd") -> Manifest:
    suffix = manifest.object_suffix(compression, False)
    return Manifest(
        name=manifest.backup_name(database, moment) if database else manifest.globals_name(moment),
        kind="database" if database else "globals",
        database=database,
        created_at=moment,
        finished_at=moment,
        object_key=manifest.object_key(database, moment, suffix),
        size_bytes=4,
        sha256="0" * 64,
        compression=compression,
        encryption=None,
        pg_dump_version="15.18",
        server_version="15.18",
        duration_s=1.0,
        job_version="0.1.0",
    )


def store(storage: LocalStorage, m: Manifest, data: bytes = b"data") -> None:
    storage.put(m.object_key, io.BytesIO(data))
    manifest.write(storage, m)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "dest")


def test_the_suffix_table_is_part_of_the_key_scheme() -> None:
    assert codec.object_suffix is manifest.object_suffix
    assert codec.COMPRESSION_SUFFIX is manifest.COMPRESSION_SUFFIX
    assert manifest.object_suffix("gzip", True) == ".gz.age"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": None}, "name is None, not a string"),
        ({"size_bytes": "12"}, "size_bytes is '12', not a byte count"),
        ({"size_bytes": True}, "not a byte count"),
        ({"sha256": None}, "sha256 is None"),
        ({"sha256": "abc"}, "not 64 lowercase hex digits"),
        ({"kind": "snapshot"}, "kind is 'snapshot'"),
        ({"database": None}, "database is None, not a database name"),
        ({"compression": "lz4"}, "compression is 'lz4'"),
        ({"encryption": "age"}, "encryption is 'age'"),
        ({"created_at": "yesterday"}, "created_at is 'yesterday', not an ISO 8601 time"),
        ({"duration_s": "1"}, "duration_s is '1', not a number"),
    ],
)
def test_every_field_is_validated_on_read(change: dict, reason: str) -> None:
    data = json.loads(record("shop", NOW).to_json())
    data.update(change)
    with pytest.raises(IntegrityError, match="is not valid: .*" + reason.replace("'", ".")):
        Manifest.from_json(json.dumps(data).encode(), "shop/x.manifest.json")


def test_a_missing_field_is_named() -> None:
    data = json.loads(record("shop", NOW).to_json())
    del data["sha256"]
    with pytest.raises(IntegrityError, match="the field 'sha256' is missing"):
        Manifest.from_json(json.dumps(data).encode(), "k")
    with pytest.raises(IntegrityError, match="not a JSON object"):
        Manifest.from_json(b"[1, 2]", "k")


def test_a_manifest_is_believed_only_about_its_own_object() -> None:
    good = record("shop", NOW)
    assert good.problem(good.key) is None
    other = record("app", NOW)
    lying = [
        replace(good, object_key=other.object_key),  # another database's object
        replace(good, object_key=record("shop", NOW - timedelta(days=1)).object_key),
        replace(good, object_key="shop/../app/app-20251110T030000Z.dump.zst"),
        replace(good, object_key="/etc/passwd"),
        replace(good, object_key="shop/shop-20251110T030000Z.dump.gz"),  # not its compression
        replace(good, name=other.name),
        replace(good, database="app"),  # self-consistent except its name
    ]
    for bad in lying:
        assert bad.problem() is not None, bad
    # Read from another manifest key (a copy of a manifest under a new name).
    assert "was read from" in (good.problem("shop/shop-20251111T030000Z.manifest.json") or "")
    assert record(None, NOW).problem(record(None, NOW).key) is None


def test_open_archive_refuses_a_foreign_object_as_an_integrity_error(storage) -> None:
    good = record("shop", NOW)
    store(storage, good)
    app = record("app", NOW)
    store(storage, app)
    for key in (app.object_key, "../outside.dump.zst", "/etc/passwd"):
        with pytest.raises(IntegrityError, match="not trustworthy") as caught:
            open_archive(CodecConfig(), storage, replace(good, object_key=key))
        assert caught.value.exit_code == 5


def test_scan_flags_invalid_and_lying_manifests_without_hiding_the_others(storage) -> None:
    good = record("shop", NOW)
    store(storage, good)
    lying = record("shop", NOW - timedelta(days=1))
    storage.put(lying.key, io.BytesIO(replace(lying, object_key=good.object_key).to_json()))
    broken = record("shop", NOW - timedelta(days=2))
    data = json.loads(broken.to_json())
    data["name"] = None
    storage.put(broken.key, io.BytesIO(json.dumps(data).encode()))
    found = manifest.scan(storage)
    assert found.trusted == [good]
    assert {r.name: r.database for r in found.rejected} == {lying.name: "shop", broken.name: "shop"}
    assert manifest.read_all(storage) == [good]
    listing = found.rejected[0].to_listing(storage.url)
    assert listing["trusted"] is False and listing["problem"]


def test_prune_never_deletes_through_a_lying_manifest(storage) -> None:
    policy = RetentionPolicy(days=0, keep_min=1)
    keep = record("shop", NOW)
    store(storage, keep)
    # An old manifest of shop whose object_key names the good backup's object: retention would
    # delete it, and the good backup's data with it.
    stale = record("shop", NOW - timedelta(days=90))
    storage.put(stale.key, io.BytesIO(replace(stale, object_key=keep.object_key).to_json()))
    old = record("shop", NOW - timedelta(days=60))
    store(storage, old)
    planned = prune.plan([storage], policy, NOW, Scope(frozenset({"shop"})))
    assert [(i.manifest.name, i.keep) for i in planned.items] == [
        (keep.name, True),
        (old.name, False),
    ]
    assert [bad.name for _, bad in planned.rejected] == [stale.name]
    assert prune.apply([storage], planned, dry_run=False) == 1
    keys = {o.key for o in storage.list()}
    assert keep.object_key in keys and keep.key in keys  # the good backup is whole
    assert stale.key in keys  # left alone, with a warning
    assert old.key not in keys and old.object_key not in keys


def test_future_dated_manifests_never_push_real_backups_out(storage) -> None:
    policy = RetentionPolicy(days=0, keep_min=2)
    real = [record("shop", NOW - timedelta(days=d)) for d in (1, 2, 3)]
    planted = [record("shop", NOW + timedelta(days=30 + d)) for d in (1, 2)]
    for m in real + planted:
        store(storage, m)
    planned = prune.plan([storage], policy, NOW, Scope(frozenset({"shop"})))
    kept = {i.manifest.name for i in planned.items if i.keep}
    assert kept == {real[0].name, real[1].name, planted[0].name, planted[1].name}


def test_prune_acts_only_on_the_job_databases(storage) -> None:
    policy = RetentionPolicy(days=0, keep_min=1)
    for database in ("crm", "app"):
        for days in (0, 40, 50):
            store(storage, record(database, NOW - timedelta(days=days)))
    store(storage, record(None, NOW - timedelta(days=40)))
    store(storage, record(None, NOW))
    planned = prune.plan([storage], policy, NOW, Scope(frozenset({"crm"})))
    assert {i.manifest.database for i in planned.items} == {"crm"}
    prune.apply([storage], planned, dry_run=False)
    left = manifest.read_all(storage)
    assert sorted(m.database for m in left) == ["app", "app", "app", "crm"]
    assert len(manifest.read_all(storage, globals_only=True)) == 2
    # "all": the server's databases now, and the globals.
    planned = prune.plan([storage], policy, NOW, Scope(frozenset({"crm", "app"}), globals=True))
    prune.apply([storage], planned, dry_run=False)
    assert len(manifest.read_all(storage)) == 2
    assert len(manifest.read_all(storage, globals_only=True)) == 1


def test_a_database_named_like_a_prefix_of_another_is_not_in_scope(storage) -> None:
    store(storage, record("shop2", NOW - timedelta(days=90)))
    planned = prune.plan(
        [storage], RetentionPolicy(days=0, keep_min=0), NOW, Scope(frozenset({"shop"}))
    )
    assert planned.items == []


def _age(storage: LocalStorage, key: str, seconds: float) -> None:
    when = datetime.now(UTC).timestamp() - seconds
    os.utime(storage.root / key, (when, when))


def test_orphans_older_than_the_safe_age_are_collected(storage) -> None:
    committed = record("shop", NOW)
    store(storage, committed)
    orphan = record("shop", NOW - timedelta(days=1)).object_key
    young = record("shop", NOW - timedelta(hours=1)).object_key
    other_job = record("app", NOW - timedelta(days=1)).object_key
    glob = record(None, NOW - timedelta(days=1)).object_key
    for key in (orphan, young, other_job, glob, "shop/notes.txt"):
        storage.put(key, io.BytesIO(b"x"))
    for key in (committed.object_key, orphan, other_job, glob, "shop/notes.txt"):
        _age(storage, key, 10 * 3600)
    now = datetime.now(UTC)
    scope = Scope(frozenset({"shop"}))
    planned = prune.plan([storage], RetentionPolicy(), now, scope, orphan_min_age_s=7 * 3600)
    assert [info.key for _, info in planned.orphans] == [orphan]
    prune.apply([storage], planned, dry_run=True)
    assert orphan in {o.key for o in storage.list()}  # a dry run deletes nothing
    prune.apply([storage], planned, dry_run=False)
    keys = {o.key for o in storage.list()}
    assert orphan not in keys
    assert {committed.object_key, young, other_job, glob, "shop/notes.txt"} <= keys


def test_orphan_detection_is_pure_and_needs_an_age() -> None:
    key = "shop/shop-20251110T030000Z.dump.zst.age"
    old = NOW - timedelta(hours=10)
    assert manifest.manifest_key_of_object(key) == "shop/shop-20251110T030000Z.manifest.json"
    assert manifest.manifest_key_of_object("_globals/globals-20251110T030000Z.sql.gz") == (
        "_globals/globals-20251110T030000Z.manifest.json"
    )
    for not_data in ("shop/app-20251110T030000Z.dump.zst", "shop/x.dump", "_state/status.json"):
        assert manifest.manifest_key_of_object(not_data) is None
    assert manifest.orphans([ObjectInfo(key, 1, old)], NOW, 3600) == [ObjectInfo(key, 1, old)]
    assert manifest.orphans([ObjectInfo(key, 1, None)], NOW, 3600) == []
    assert manifest.orphans([ObjectInfo(key, 1, NOW)], NOW, 3600) == []
    committed = ObjectInfo("shop/shop-20251110T030000Z.manifest.json", 1, old)
    assert manifest.orphans([ObjectInfo(key, 1, old), committed], NOW, 3600) == []


def test_latest_never_falls_back_silently_past_an_untrusted_newest(tmp_path: Path) -> None:
    first, second = LocalStorage(tmp_path / "a"), LocalStorage(tmp_path / "b")
    older, newest = record("shop", NOW - timedelta(days=1)), record("shop", NOW)
    store(first, older)
    store(second, older)
    # The newest backup exists only on the first destination, and its manifest was altered.
    storage_lie = replace(newest, object_key=older.object_key)
    first.put(newest.key, io.BytesIO(storage_lie.to_json()))
    with pytest.raises(IntegrityError, match=r"newest backup .* is not trustworthy"):
        catalog.resolve([first, second], "latest", "shop", None)
    with pytest.raises(IntegrityError, match="not trustworthy"):
        catalog.resolve([first, second], newest.name, None, None)
    # A backup whose manifest is good on another destination is taken from there.
    store(second, newest)
    [entry] = catalog.resolve([first, second], newest.name, None, None)
    assert entry.destination == second.url
    [entry] = catalog.resolve([first, second], "latest", "shop", None)
    assert (entry.manifest, entry.destination) == (newest, second.url)
