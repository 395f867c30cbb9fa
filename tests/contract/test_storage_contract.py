"""The Storage contract (``backup/storage/base.py``), run unchanged against every backend.

local: a temporary directory; s3: a real SeaweedFS server; b2: b2sdk's RawSimulator.
"""

from __future__ import annotations

import io
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from backup.errors import ObjectNotFound, StorageError
from tests.contract.conftest import Harness


class DumpFailed(Exception):
    """What the job's stream raises when pg_dump (or a codec stage) fails."""


class FailingStream:
    """Yields ``fail_after`` bytes, then raises ``error`` from read(): a dump that died."""

    def __init__(self, fail_after: int) -> None:
        self.remaining = fail_after
        self.error = DumpFailed("pg_dump exited with status 1")

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            raise self.error
        n = self.remaining if size < 0 else min(size, self.remaining)
        self.remaining -= n
        return b"d" * n


class TrickleStream:
    """A stream whose read(n) returns fewer bytes than asked, like a pipe."""

    def __init__(self, data: bytes, max_chunk: int = 777) -> None:
        self.data = io.BytesIO(data)
        self.max_chunk = max_chunk

    def read(self, size: int = -1) -> bytes:
        return self.data.read(self.max_chunk if size < 0 else min(size, self.max_chunk))


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def read_all(backend: Harness, key: str, chunk: int = 64 * 1024) -> bytes:
    stream = backend.storage.open(key)
    try:
        parts = []
        while data := stream.read(chunk):
            assert len(data) <= chunk
            parts.append(data)
        return b"".join(parts)
    finally:
        stream.close()


def test_small_round_trip(backend: Harness) -> None:
    data = b"a small dump"
    assert backend.storage.put("db/db-1.dump", io.BytesIO(data)) == len(data)
    assert read_all(backend, "db/db-1.dump") == data
    [info] = backend.storage.list()
    assert (info.key, info.size) == ("db/db-1.dump", len(data))


@pytest.mark.parametrize("parts", [1, 2, 2.5])
def test_multipart_round_trip(backend: Harness, parts: float) -> None:
    """Exactly one part, an exact multiple of parts, and a short last part."""
    data = payload(int(backend.part_size * parts), seed=int(parts * 10))
    assert backend.storage.put("db/big.dump", TrickleStream(data, 64 * 1024)) == len(data)
    assert read_all(backend, "db/big.dump") == data
    assert [(o.key, o.size) for o in backend.storage.list()] == [("db/big.dump", len(data))]
    assert backend.incomplete() == 0


def test_empty_stream(backend: Harness) -> None:
    assert backend.storage.put("db/empty.dump", io.BytesIO(b"")) == 0
    assert read_all(backend, "db/empty.dump") == b""


def test_read_without_size_returns_everything(backend: Harness) -> None:
    data = payload(3000)
    backend.storage.put("k", io.BytesIO(data))
    stream = backend.storage.open("k")
    try:
        assert stream.read() == data
        assert stream.read(10) == b""
    finally:
        stream.close()


def test_open_missing_key_raises_object_not_found(backend: Harness) -> None:
    with pytest.raises(ObjectNotFound):
        backend.storage.open("db/missing.dump")


@pytest.mark.parametrize("fail_at_parts", [0.5, 1.5, 2.5])
def test_failed_stream_leaves_nothing(backend: Harness, fail_at_parts: float) -> None:
    """The stream's own exception comes back unchanged; nothing is visible or left over."""
    stream = FailingStream(int(backend.part_size * fail_at_parts))
    with pytest.raises(DumpFailed) as raised:
        backend.storage.put("db/failed.dump", stream)
    assert raised.value is stream.error
    assert backend.storage.list() == []
    with pytest.raises(ObjectNotFound):
        backend.storage.open("db/failed.dump")
    assert backend.incomplete() == 0
    assert backend.versions("db/failed.dump") == 0


def test_failed_overwrite_keeps_the_old_object(backend: Harness) -> None:
    backend.storage.put("k", io.BytesIO(b"old"))
    with pytest.raises(DumpFailed):
        backend.storage.put("k", FailingStream(int(backend.part_size * 1.5)))
    assert read_all(backend, "k") == b"old"


def test_cleanup_incomplete_removes_a_crashed_upload(backend: Harness) -> None:
    backend.storage.put("db/done.dump", io.BytesIO(b"complete"))
    backend.abandon_upload("db/crashed.dump")
    assert backend.incomplete() == 1
    assert [o.key for o in backend.storage.list()] == ["db/done.dump"]
    assert backend.storage.cleanup_incomplete("db/") == 1
    assert backend.incomplete() == 0
    assert backend.storage.cleanup_incomplete() == 0
    assert read_all(backend, "db/done.dump") == b"complete"


def test_cleanup_incomplete_leaves_a_young_upload(backend: Harness) -> None:
    """Another copy of the job may be uploading right now: only an old upload is removed."""
    backend.abandon_upload("db/live.dump")
    assert backend.storage.cleanup_incomplete("db/", older_than_s=3600) == 0
    assert backend.storage.cleanup_incomplete(older_than_s=3600) == 0
    assert backend.incomplete() == 1
    assert backend.storage.cleanup_incomplete("db/", older_than_s=0) == 1
    assert backend.incomplete() == 0


def test_cleanup_incomplete_stays_in_its_folder(backend: Harness) -> None:
    """Cleaning one database's folder leaves another's (``db1/`` is not ``db10/``)."""
    backend.abandon_upload("db10/crashed.dump")
    assert backend.storage.cleanup_incomplete("db1/") == 0
    assert backend.incomplete() == 1
    assert backend.storage.cleanup_incomplete("db10/") == 1


def test_list_prefix_and_relative_keys(backend: Harness) -> None:
    keys = ["db1/a.dump", "db1/a.manifest.json", "db10/c.dump", "db2/b.dump", "top"]
    for i, key in enumerate(keys):
        backend.storage.put(key, io.BytesIO(b"x" * (i + 1)))
    backend.sibling("backups/other").put("db1/not-mine.dump", io.BytesIO(b"other prefix"))

    listed = backend.storage.list()
    assert [o.key for o in listed] == keys
    assert [o.size for o in listed] == [1, 2, 3, 4, 5]
    assert all(o.modified is not None for o in listed)
    assert [o.key for o in backend.storage.list("db1/")] == ["db1/a.dump", "db1/a.manifest.json"]
    # A prefix is a string prefix, not a directory.
    assert [o.key for o in backend.storage.list("db1")] == [
        "db1/a.dump",
        "db1/a.manifest.json",
        "db10/c.dump",
    ]
    assert [o.key for o in backend.storage.list("db1/a.m")] == ["db1/a.manifest.json"]
    assert backend.storage.list("nothing/") == []


@pytest.mark.slow  # 1,010 objects put, listed and deleted: up to a minute on an emulator
def test_list_and_delete_past_1000_objects(backend: Harness) -> None:
    """list pages past 1,000 keys; delete handles more than one batch of 1,000."""
    keys = [f"db/obj-{i:05d}" for i in range(1010)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: backend.storage.put(key, io.BytesIO(b"1")), keys))
    assert [o.key for o in backend.storage.list()] == keys
    assert len(backend.storage.list("db/obj-01")) == 10
    backend.storage.delete(keys)
    assert backend.storage.list() == []


def test_delete_really_deletes(backend: Harness) -> None:
    """Every version goes: on B2, a delete by name would only hide the file."""
    backend.storage.put("db/x.dump", io.BytesIO(b"first"))
    backend.storage.put("db/x.dump", io.BytesIO(b"second"))
    backend.storage.put("db/x.dump.manifest.json", io.BytesIO(b"{}"))
    backend.storage.delete(["db/x.dump"])
    assert backend.versions("db/x.dump") == 0
    assert [o.key for o in backend.storage.list()] == ["db/x.dump.manifest.json"]
    with pytest.raises(ObjectNotFound):
        backend.storage.open("db/x.dump")


def test_delete_missing_key_is_fine(backend: Harness) -> None:
    backend.storage.delete(["db/never-existed.dump"])
    backend.storage.delete([])
    backend.storage.put("k", io.BytesIO(b"v"))
    backend.storage.delete(iter(["k", "k", "missing"]))
    assert backend.storage.list() == []


def test_overwrite_replaces_content(backend: Harness) -> None:
    backend.storage.put("db/s.json", io.BytesIO(b"version one, longer"))
    backend.storage.put("db/s.json", io.BytesIO(b"v2"))
    assert read_all(backend, "db/s.json") == b"v2"
    assert [(o.key, o.size) for o in backend.storage.list()] == [("db/s.json", 2)]


def test_fingerprint_changes_when_the_object_is_written_again(backend: Harness) -> None:
    """Same key, same size, one byte flipped: the listing tells it apart without a read
    (what a directory-format backup relies on before it reuses an object)."""
    backend.storage.put("db/_objects/ab/obj", io.BytesIO(b"stored bytes"))
    [first] = backend.storage.list("db/")
    again = backend.storage.list("db/")
    assert first.fingerprint and again[0].fingerprint == first.fingerprint
    backend.storage.put("db/_objects/ab/obj", io.BytesIO(b"stored bytez"))
    [second] = backend.storage.list("db/")
    assert second.size == first.size
    assert second.fingerprint and second.fingerprint != first.fingerprint


@pytest.mark.parametrize("key", ["", "/abs", "db/../escape", ".."])
def test_invalid_keys_are_refused(backend: Harness, key: str) -> None:
    with pytest.raises(StorageError):
        backend.storage.put(key, io.BytesIO(b"x"))


def test_url_has_no_credentials(backend: Harness) -> None:
    url = backend.storage.url
    assert url.startswith(("file://", "s3://", "b2://", "gs://", "azure://"))
    assert "@" not in url


def read_range(backend: Harness, key: str, offset: int, length: int, chunk: int = 1000) -> bytes:
    stream = backend.storage.open_range(key, offset, length)
    try:
        parts = []
        while data := stream.read(chunk):
            assert len(data) <= chunk
            parts.append(data)
        return b"".join(parts)
    finally:
        stream.close()


def test_open_range_reads_only_that_range(backend: Harness) -> None:
    """A file inside a directory-format pack is read alone: its offset and length."""
    data = payload(100_000, seed=7)
    backend.storage.put("db/_objects/ab/pack", io.BytesIO(data))
    for offset, length in [(0, 10), (12_345, 4_321), (99_990, 10), (0, 100_000), (5, 1)]:
        assert (
            read_range(backend, "db/_objects/ab/pack", offset, length)
            == data[offset : offset + length]
        ), (offset, length)
    assert read_range(backend, "db/_objects/ab/pack", 50, 0) == b""
    whole = backend.storage.open_range("db/_objects/ab/pack", 90_000, 10_000)
    try:
        assert whole.read() == data[90_000:]
    finally:
        whole.close()


def test_open_range_of_a_missing_key_raises_object_not_found(backend: Harness) -> None:
    with pytest.raises(ObjectNotFound):
        backend.storage.open_range("db/none", 0, 10).read(10)
