"""The serial start and end of a run over many databases (issue 23, part 2) send a few requests
at once: the unfinished-upload cleanup and the orphan listing (one listing per database folder)
and retention's manifest reads. Against a real local destination; each listing or read waits at
a barrier that only opens when two of them are in flight, so a one-by-one loop fails (a broken
barrier), whatever the machine's speed."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backup import dump, manifest
from backup.config import load
from backup.manifest import Scope
from backup.storage import retry
from backup.storage.local import LocalStorage

NOW = datetime(2025, 11, 10, 3, 0, tzinfo=UTC)
DATABASES = [f"tenant_{n:03d}" for n in range(20)]


class Gated(LocalStorage):
    """A local destination whose listings, reads and cleanups wait until two are in flight
    (once the gate is armed), and that counts how many ran at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate: threading.Barrier | None = None
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def _enter(self) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        if self.gate is not None:
            self.gate.wait()

    def _leave(self) -> None:
        with self.lock:
            self.running -= 1

    def arm(self) -> None:
        self.gate = threading.Barrier(2, timeout=10)

    def list(self, prefix: str = ""):  # type: ignore[override]
        self._enter()
        try:
            return super().list(prefix)
        finally:
            self._leave()

    def open(self, key: str):  # type: ignore[override]
        self._enter()
        try:
            return super().open(key)
        finally:
            self._leave()

    def cleanup_incomplete(self, prefix: str = "", older_than_s: float = 0.0) -> int:
        self._enter()
        try:
            return super().cleanup_incomplete(prefix, older_than_s)
        finally:
            self._leave()


@pytest.fixture
def storage(tmp_path: Path) -> Gated:
    gated = Gated(tmp_path / "dest")
    for database in DATABASES:
        moment = NOW
        key = manifest.object_key(database, moment, manifest.object_suffix("zstd", False))
        gated.put(key, io.BytesIO(b"data"))
        manifest.write(
            gated,
            manifest.Manifest(
                name=manifest.backup_name(database, moment),
                kind="database",
                database=database,
                created_at=moment,
                finished_at=moment,
                object_key=key,
                size_bytes=4,
                sha256="0" * 64,
                compression="zstd",
                encryption=None,
                pg_dump_version="15.18",
                server_version="15.18",
                duration_s=1.0,
                job_version="0.1.0",
            ),
        )
    gated.arm()
    return gated


def test_each_keeps_the_order_and_bounds_the_requests_in_flight() -> None:
    lock = threading.Lock()
    state = {"running": 0, "most": 0}
    gate = threading.Barrier(retry.REQUESTS_IN_FLIGHT, timeout=10)

    def work(n: int) -> int:
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        if n < retry.REQUESTS_IN_FLIGHT:
            gate.wait()  # the first ones all in flight together
        with lock:
            state["running"] -= 1
        return n * n

    assert retry.each(range(40), work) == [n * n for n in range(40)]
    assert state["most"] == retry.REQUESTS_IN_FLIGHT


def test_each_raises_the_first_failure_and_starts_nothing_after_it() -> None:
    started: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        if n == 0:
            raise ValueError("listing refused")
        return n

    with pytest.raises(ValueError, match="listing refused"):
        retry.each(range(1000), work, in_flight=2)
    assert len(started) < 1000


def test_the_folders_of_the_scope_are_listed_a_few_at_once(storage: Gated) -> None:
    objects = manifest.scoped_objects(storage, Scope(frozenset(DATABASES)))
    assert len(manifest.manifest_keys_in(objects)) == len(DATABASES)
    assert 2 <= storage.most <= retry.REQUESTS_IN_FLIGHT


def test_the_manifests_are_read_a_few_at_once_and_judged_as_before(storage: Gated) -> None:
    storage.gate = None
    keys = manifest.manifest_keys_in(storage.list(""))
    (storage.root / keys[3]).write_bytes(b"{not json")
    storage.arm()
    found = manifest.scan_keys(storage, keys)
    assert len(found.trusted) == len(DATABASES) - 1
    assert [bad.key for bad in found.rejected] == [keys[3]]
    assert 2 <= storage.most <= retry.REQUESTS_IN_FLIGHT


def test_the_unfinished_uploads_of_every_folder_are_cleaned_a_few_at_once(
    storage: Gated, tmp_path: Path
) -> None:
    config = load(
        {"PGHOST": "db", "PGDATABASE": "shop", "BACKUP_DESTINATIONS": f"file://{tmp_path}/dest"}
    )
    dump._clean_unfinished_uploads(config, [storage], manifest.Scope(frozenset(DATABASES)))
    assert 2 <= storage.most <= retry.REQUESTS_IN_FLIGHT
