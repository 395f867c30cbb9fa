"""What a directory-format backup may reuse (``dirformat/reuse.py``), on a real local
destination: only what the listing shows as its manifest recorded it; anything else is read
back first, and a store that gives no fingerprint proves nothing."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from backup.dump.reuse import Target, prepare, still_whole
from backup.errors import StorageError
from backup.storage.base import ObjectInfo
from backup.storage.local import LocalStorage
from tests.unit.test_garbage_collection import DB, SUFFIX, World


class NoFingerprints(LocalStorage):
    """A store whose listing gives an empty fingerprint (an S3 look-alike without ETags)."""

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return [replace(o, fingerprint="") for o in super().list(prefix)]


def _committed(root: Path) -> World:
    world = World(root)
    world.commit(world.begin({1, 2, 3}))
    return world


def test_objects_listed_as_recorded_are_reused(tmp_path: Path) -> None:
    world = _committed(tmp_path)
    target = Target(world.storage)
    prepare(target, world.config, DB, SUFFIX)
    assert len(target.known) == 3 and not target.suspect


def test_a_rewritten_object_is_a_suspect_not_reused(tmp_path: Path) -> None:
    world = _committed(tmp_path)
    victim = sorted((tmp_path / DB / "_objects").rglob(f"*{SUFFIX}"))[0]
    victim.write_bytes(victim.read_bytes())  # same bytes, written again: not proven whole
    target = Target(world.storage)
    prepare(target, world.config, DB, SUFFIX)
    assert len(target.known) == 2 and len(target.suspect) == 1


def test_an_empty_fingerprint_proves_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.storage = NoFingerprints(tmp_path)
    world.commit(world.begin({1, 2, 3}))  # its manifest records the empty fingerprints
    target = Target(world.storage)
    prepare(target, world.config, DB, SUFFIX)
    assert not target.known and len(target.suspect) == 3


class Unreadable(LocalStorage):
    """A store whose object reads fail (a flaky network) while the rest works."""

    def open(self, key: str):  # type: ignore[override]
        if "/_objects/" not in key:
            return super().open(key)
        raise StorageError(f"{self.url}: cannot read {key}: connection reset")


def test_a_suspect_that_cannot_be_read_back_is_not_reused_and_stops_nothing(
    tmp_path: Path,
) -> None:
    world = _committed(tmp_path)
    victim = sorted((tmp_path / DB / "_objects").rglob(f"*{SUFFIX}"))[0]
    victim.write_bytes(victim.read_bytes())
    target = Target(Unreadable(tmp_path))
    prepare(target, world.config, DB, SUFFIX)
    [(key, stored)] = target.suspect.items()
    assert still_whole(target.storage, key, stored, threading.Event()) is False
