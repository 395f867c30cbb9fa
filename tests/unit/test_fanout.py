"""The tee to several destinations: backpressure, one destination failing, abort."""

from __future__ import annotations

import io
import threading
import time

import pytest

from backup.errors import StorageError
from backup.storage.local import LocalStorage
from backup.stream.fanout import QUEUE_CHUNKS, Fanout, StreamAborted


class GatedStorage(LocalStorage):
    """A local directory whose uploads wait for a gate before reading."""

    def __init__(self, root, gate: threading.Event) -> None:
        super().__init__(root)
        self.gate = gate

    def put(self, key, stream):
        self.gate.wait()
        return super().put(key, stream)


class BrokenStorage(LocalStorage):
    def put(self, key, stream):
        stream.read(10)
        raise StorageError("disk on fire")


def test_every_destination_gets_every_byte(tmp_path):
    a, b = LocalStorage(tmp_path / "a"), LocalStorage(tmp_path / "b")
    fanout = Fanout([(a, "k"), (b, "k")])
    for i in range(50):
        fanout.write(bytes([i]) * 10_000)
    uploads = fanout.commit()
    assert all(u.ok for u in uploads)
    assert (tmp_path / "a" / "k").read_bytes() == (tmp_path / "b" / "k").read_bytes()
    assert fanout.size == 500_000 and len(fanout.sha256.hexdigest()) == 64


def test_the_slowest_destination_sets_the_pace(tmp_path):
    gate = threading.Event()
    fanout = Fanout([(GatedStorage(tmp_path / "slow", gate), "k")])
    written = []

    def producer():
        for _ in range(QUEUE_CHUNKS * 4):
            fanout.write(b"x" * 1000)
            written.append(1)

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.5)
    # Blocked: the queue holds at most QUEUE_CHUNKS chunks while the destination is stalled.
    assert len(written) <= QUEUE_CHUNKS + 1
    gate.set()
    thread.join(10)
    assert len(written) == QUEUE_CHUNKS * 4
    assert fanout.commit()[0].ok


def test_one_failing_destination_leaves_the_others(tmp_path):
    fanout = Fanout([(BrokenStorage(tmp_path / "bad"), "k"), (LocalStorage(tmp_path / "ok"), "k")])
    for _ in range(100):
        fanout.write(b"y" * 10_000)
    bad, good = fanout.commit()
    assert not bad.ok and "disk on fire" in str(bad.error)
    assert good.ok and (tmp_path / "ok" / "k").stat().st_size == 1_000_000


def test_every_destination_failing_stops_the_stream(tmp_path):
    fanout = Fanout([(BrokenStorage(tmp_path / "bad"), "k")])
    with pytest.raises(StorageError, match="every destination failed"):
        for _ in range(1000):
            fanout.write(b"z" * 10_000)
    fanout.abort(RuntimeError("stop"))


def test_abort_leaves_nothing_visible(tmp_path):
    storage = LocalStorage(tmp_path / "a")
    fanout = Fanout([(storage, "k")])
    fanout.write(b"partial data")
    fanout.abort(RuntimeError("pg_dump died"))
    [upload] = fanout.uploads
    assert isinstance(upload.error, StreamAborted)
    assert storage.list() == [] and not list((tmp_path / "a").rglob("*.partial"))


class HungStorage(LocalStorage):
    """A destination stuck in a request that never answers: it stops reading its stream."""

    def __init__(self, root, release: threading.Event) -> None:
        super().__init__(root)
        self.release = release

    def put(self, key, stream):
        stream.read(10)
        self.release.wait()
        return 0


def test_abort_has_a_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr("backup.stream.fanout.ABORT_DEADLINE_S", 0.5)
    release = threading.Event()
    good, hung = LocalStorage(tmp_path / "good"), HungStorage(tmp_path / "hung", release)
    fanout = Fanout([(good, "k"), (hung, "k")])
    fanout.write(b"x" * 100)
    started = time.monotonic()
    done = threading.Thread(target=fanout.abort, args=(RuntimeError("SIGTERM"),), daemon=True)
    done.start()
    done.join(5)
    try:
        assert not done.is_alive(), "abort waited for a hung destination"
        assert time.monotonic() - started < 2
        assert list((tmp_path / "good").rglob("*")) == []
    finally:
        release.set()


def test_an_aborted_stream_raises_even_on_read_of_nothing(tmp_path):
    """A backend waiting for its parts polls with read(0): it hears of the abort at once."""
    gate = threading.Event()
    storage = GatedStorage(tmp_path / "a", gate)
    fanout = Fanout([(storage, "k")])
    reader = fanout.uploads[0].reader
    reader.aborted = RuntimeError("dump failed")
    with pytest.raises(StreamAborted):
        reader.read(0)
    gate.set()
    fanout.abort(RuntimeError("dump failed"))


class SlowFinishStorage(LocalStorage):
    """Reads the whole stream, then takes its time to finish (a slow fsync, a slow complete)."""

    def __init__(self, root, finishing: threading.Event, release: threading.Event) -> None:
        super().__init__(root)
        self.finishing, self.release = finishing, release

    def put(self, key, stream):
        data = stream.read()
        self.finishing.set()
        self.release.wait(5)
        return super().put(key, io.BytesIO(data))


def test_an_upload_that_finishes_after_the_abort_is_removed(tmp_path):
    finishing, release = threading.Event(), threading.Event()
    fanout = Fanout([(SlowFinishStorage(tmp_path / "d", finishing, release), "db/k.dump")])
    fanout.write(b"x" * 1000)
    committing = threading.Thread(target=fanout.commit)
    committing.start()
    assert finishing.wait(5)  # the stream has ended; the backend is still finishing
    release.set()
    fanout.abort(KeyboardInterrupt("a signal during the final join"))
    committing.join(5)
    assert not (tmp_path / "d" / "db" / "k.dump").exists()
