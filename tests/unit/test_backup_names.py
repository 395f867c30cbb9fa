"""A backup is never named like one a destination already holds: names have one-second
resolution, and a run in the same second (or on a machine whose clock is behind) would upload
under a committed backup's keys."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from backup import dump, manifest
from backup.errors import StorageError
from backup.manifest import catalog
from backup.storage.local import LocalStorage


def _take(storage: LocalStorage, database: str, moment) -> None:
    key = manifest.manifest_key(database, moment)
    storage.put(key, io.BytesIO(b"{}"))


def test_a_free_second_is_used_as_it_is(tmp_path):
    storage = LocalStorage(tmp_path / "dest")
    before = dump.now_utc()
    moment = catalog.unused_moment([storage], "shop")
    assert before <= moment <= dump.now_utc()


def test_a_taken_name_in_any_destination_moves_the_backup_to_a_later_second(tmp_path):
    first, second = LocalStorage(tmp_path / "a"), LocalStorage(tmp_path / "b")
    now = dump.now_utc()
    _take(second, "shop", now)  # only the second destination holds it
    _take(second, "shop", now + timedelta(seconds=1))
    _take(first, "other", now + timedelta(seconds=2))  # another database's name is no obstacle
    moment = catalog.unused_moment([first, second], "shop")
    assert moment >= now + timedelta(seconds=2)
    assert not second.list(
        manifest.manifest_key("shop", moment).removesuffix(manifest.MANIFEST_SUFFIX)
    )


def test_the_globals_are_named_the_same_careful_way(tmp_path):
    storage = LocalStorage(tmp_path / "dest")
    now = dump.now_utc()
    _take(storage, None, now)
    assert catalog.unused_moment([storage], None) > now


def test_names_taken_for_seconds_ahead_stop_the_backup(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path / "dest")
    now = dump.now_utc()
    for ahead in range(catalog.NAME_ATTEMPTS + 2):
        _take(storage, "shop", now + timedelta(seconds=ahead))
    monkeypatch.setattr(catalog, "NAME_ATTEMPTS", 2)
    with pytest.raises(StorageError, match="refusing to overwrite them"):
        catalog.unused_moment([storage], "shop")
