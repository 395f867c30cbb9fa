"""Garbage collection never deletes a referenced object: a property test over random sequences
of directory-format backups (some cut in two by a prune, as a backup of another process would
be), retention deleting random manifests, and collections, on a real local destination. The
backups use the engine's own steps: what is reused (``_prepare``), the re-check before the
commit (``_recheck``), the manifest (``directory_manifest``); the collection is
``prune.collect_garbage`` itself."""

from __future__ import annotations

import hashlib
import io
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup import manifest
from backup.config import load
from backup.dump.directory import directory_manifest
from backup.dump.reuse import Target, prepare, recheck
from backup.manifest import Scope
from backup.retention import prune
from backup.storage.local import LocalStorage
from tests.fixtures.examples import examples
from tests.unit.test_manifest_trust import record

DB = "shop"
SUFFIX = ".zst"
START = datetime(2025, 1, 1, tzinfo=UTC)

backups = st.tuples(st.just("backup"), st.sets(st.integers(0, 7), min_size=1), st.booleans())
prunes = st.tuples(st.just("prune"), st.sets(st.integers(0, 9)), st.booleans())


class World:
    def __init__(self, root: Path) -> None:
        self.storage = LocalStorage(root)
        self.config = load(
            {
                "PGDATABASE": DB,
                "BACKUP_DESTINATIONS": f"file://{root}",
                "BACKUP_FORMAT": "directory",
            }
        )
        self.clock = START
        self.in_flight: Target | None = None

    def begin(self, contents: set[int]) -> Target:
        """A backup up to its re-check: reuses what the destination vouches for, uploads the
        rest (the address here is the content's hash: the key is not what is tested)."""
        target = Target(self.storage)
        prepare(target, self.config, DB, SUFFIX)
        for n in sorted(contents):
            data = f"table {n}".encode() * (n + 1)
            key = manifest.content_key(DB, hashlib.sha256(data).hexdigest(), SUFFIX)
            name = "toc.dat" if n == min(contents) else f"{1000 + n}.dat"
            if key in target.known:
                size, sha = target.known[key].size, target.known[key].sha256
                new = False
            else:
                size = self.storage.put(key, io.BytesIO(data))
                sha, new = hashlib.sha256(data).hexdigest(), True
            target.files.append(
                {
                    "name": name,
                    "key": key,
                    "plain_bytes": size,
                    "size_bytes": size,
                    "sha256": sha,
                    "new": new,
                }
            )
        return target

    def commit(self, target: Target) -> None:
        recheck(target, DB)
        if target.error is None:
            self.clock += timedelta(hours=1)
            manifest.write(self.storage, directory_manifest(record(DB, self.clock), target))

    def prune(self, victims: set[int]) -> None:
        keys = manifest.manifest_keys(self.storage)
        for index in sorted(victims):
            if index < len(keys):
                self.storage.delete([keys[index]])
        # Every object counts as old enough: the strictest collection there is.
        prune.collect_garbage(
            [self.storage], Scope(frozenset({DB})), datetime.now(UTC), -1.0, dry_run=False
        )

    def check(self) -> None:
        present = {o.key: o.size for o in self.storage.list(f"{DB}/_objects/")}
        found = manifest.scan(self.storage)
        assert not found.rejected
        referenced = set()
        for m in found.trusted:
            for f in m.files:
                assert present.get(f["key"]) == f["size_bytes"], (m.name, f["key"])
                referenced.add(f["key"])
        if self.in_flight is None:
            assert set(present) <= referenced  # and nothing unreferenced is left


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(backups, prunes), min_size=1, max_size=12))
def test_collection_never_deletes_a_referenced_object(steps) -> None:
    with tempfile.TemporaryDirectory() as root:
        world = World(Path(root))
        for kind, values, split in steps:
            if kind == "backup":
                target = world.begin(values)
                if split:  # a prune runs between its uploads and its commit
                    world.in_flight = target
                    world.prune({0})
                    world.in_flight = None
                world.commit(target)
            else:
                world.prune(values)
            world.check()
