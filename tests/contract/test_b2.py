"""B2-specific behaviour on b2sdk's simulator: retries, token expiry, restricted keys, SSE-B2."""

from __future__ import annotations

import hashlib
import io
import itertools
import mmap
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from b2sdk.v2 import SSE_NONE
from b2sdk.v2 import exception as b2exc

from backup.config import (
    MAX_PART_SIZE_MB,
    MIB,
    MIN_PART_SIZE_MB,
    B2Config,
    Destination,
    Secret,
    StorageConfig,
)
from backup.errors import ObjectNotFound, StorageError
from backup.storage.b2 import B2Storage
from backup.storage.b2.large_file import B2_MAX_PARTS, PARTS_PER_STEP, capacity_bytes, part_size
from tests.contract.conftest import B2_SIM_PART_SIZE, PREFIX, b2_storage
from tests.contract.test_storage_contract import DumpFailed, FailingStream
from tests.fixtures.b2sim import B2Sim, simulated_api


def test_large_stream_is_a_large_file(b2_sim: B2Sim) -> None:
    storage = b2_storage(b2_sim)
    storage.put("big.dump", io.BytesIO(b"z" * 3500))
    [item] = b2_sim.api.session.list_file_names(b2_sim.bucket.id_, None, 10, None)["files"]
    # A large file has no whole-file SHA-1 (only its parts do); a simple upload always has one.
    assert item["contentSha1"] == "none"
    assert item["contentLength"] == 3500


def test_upload_errors_are_retried(b2_sim: B2Sim) -> None:
    b2_sim.sim.set_upload_errors(
        [b2exc.ServiceError("503 service unavailable"), b2exc.B2ConnectionError("reset")]
    )
    storage = b2_storage(b2_sim)
    assert storage.put("db/x.dump", io.BytesIO(b"survives two failures")) == 21
    assert storage.open("db/x.dump").read() == b"survives two failures"


def test_upload_failing_every_attempt_is_a_storage_error(b2_sim: B2Sim) -> None:
    b2_sim.sim.set_upload_errors([b2exc.ServiceError("503") for _ in range(10)])
    storage = b2_storage(b2_sim)
    with pytest.raises(StorageError) as raised:
        storage.put("db/x.dump", io.BytesIO(b"never stored"))
    assert not isinstance(raised.value, ObjectNotFound)
    assert raised.value.exit_code == 4
    b2_sim.sim.upload_errors.clear()
    assert storage.list() == []


def test_expired_auth_token_is_renewed(b2_sim: B2Sim) -> None:
    storage = b2_storage(b2_sim)
    storage.put("before", io.BytesIO(b"1"))
    b2_sim.sim.expire_auth_token(b2_sim.api.account_info.get_account_auth_token())
    storage.put("after", io.BytesIO(b"2" * 2500))
    assert [o.key for o in storage.list()] == ["after", "before"]
    b2_sim.sim.expire_auth_token(b2_sim.api.account_info.get_account_auth_token())
    assert storage.open("after").read() == b"2" * 2500
    storage.delete(["before", "after"])
    assert b2_sim.file_versions() == []


def test_key_restricted_to_bucket_and_prefix_works(b2_sim: B2Sim) -> None:
    """A key limited to one bucket and a name prefix, without listBuckets, does everything."""
    api = b2_sim.restricted_api(name_prefix="backups/")
    assert "listBuckets" not in api.account_info.get_allowed()["capabilities"]
    storage = B2Storage(api, b2_sim.bucket_name, PREFIX, part_size_bytes=1000)
    assert storage.put("db/a.dump", io.BytesIO(b"q" * 2500)) == 2500
    assert storage.open("db/a.dump").read() == b"q" * 2500
    assert [o.key for o in storage.list("db/")] == ["db/a.dump"]
    with pytest.raises(DumpFailed):
        storage.put("db/failed.dump", FailingStream(2500))
    assert b2_sim.unfinished_large_files() == []
    storage.put("db/a.dump", io.BytesIO(b"second version"))
    storage.delete(["db/a.dump"])
    assert b2_sim.file_versions() == []
    assert storage.cleanup_incomplete() == 0


def test_key_restricted_to_another_bucket_names_it(b2_sim: B2Sim) -> None:
    other = b2_sim.create_bucket("other-bucket")
    api = b2_sim.restricted_api(bucket=other)
    storage = B2Storage(api, b2_sim.bucket_name, PREFIX)
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "other-bucket" in raised.value.message
    assert "BACKUP_DESTINATIONS" in raised.value.hint


def test_key_restricted_to_another_prefix_says_which(b2_sim: B2Sim) -> None:
    api = b2_sim.restricted_api(name_prefix="elsewhere/")
    storage = B2Storage(api, b2_sim.bucket_name, PREFIX)
    with pytest.raises(StorageError) as raised:
        storage.put("k", io.BytesIO(b"x"))
    assert "elsewhere/" in raised.value.message
    assert f"b2://{b2_sim.bucket_name}/elsewhere" in raised.value.hint


def test_key_without_write_capability_hints_at_capabilities(b2_sim: B2Sim) -> None:
    api = b2_sim.restricted_api(capabilities=["listFiles", "readFiles"])
    storage = B2Storage(api, b2_sim.bucket_name, PREFIX)
    with pytest.raises(StorageError) as raised:
        storage.put("k", io.BytesIO(b"x"))
    assert "writeFiles" in raised.value.hint


def test_wrong_application_key_hint_and_no_secret_in_message(b2_sim: B2Sim) -> None:
    api = simulated_api(b2_sim.sim)
    wrong = "K005-this-is-the-wrong-secret"
    storage = B2Storage(
        api,
        b2_sim.bucket_name,
        PREFIX,
        authorize=lambda: api.authorize_account("production", b2_sim.key_id, wrong),
    )
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "B2_APPLICATION_KEY" in raised.value.hint
    assert wrong not in str(raised.value) + raised.value.hint


def test_missing_bucket_hint(b2_sim: B2Sim) -> None:
    storage = B2Storage(b2_sim.api, "no-such-bucket", PREFIX)
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "no-such-bucket" in raised.value.hint
    assert "BACKUP_DESTINATIONS" in raised.value.hint


@pytest.mark.parametrize("size", [10, 2500])
def test_sse_b2_is_requested(b2_sim: B2Sim, size: int) -> None:
    """B2_SSE=true encrypts even where the bucket's default does not (simple and large files)."""
    # The simulator gives every bucket SSE-B2 by default and its API refuses "none" as a
    # default, so the test bucket's default is switched off inside the simulator.
    b2_sim.sim.bucket_id_to_bucket[b2_sim.bucket.id_].default_server_side_encryption = SSE_NONE
    plain, encrypted = b2_storage(b2_sim), b2_storage(b2_sim, sse_b2=True)
    plain.put("plain", io.BytesIO(b"p" * size))
    encrypted.put("enc", io.BytesIO(b"e" * size))
    files = b2_sim.api.session.list_file_versions(b2_sim.bucket.id_, None, None, 10, None)["files"]
    modes = {f["fileName"]: f.get("serverSideEncryption", {}).get("mode") for f in files}
    assert modes[f"{PREFIX}/enc"] == "SSE-B2"
    assert modes[f"{PREFIX}/plain"] != "SSE-B2"
    assert encrypted.open("enc").read() == b"e" * size


def test_from_destination_touches_no_network() -> None:
    config = StorageConfig(
        destinations=("b2://my-bucket/backups/postgresql",),
        part_size_bytes=8 * 1024 * 1024,
        parts_in_flight=3,
        b2=B2Config(key_id="0012345", application_key=Secret("K00secret"), sse_b2=True),
    )
    storage = B2Storage.from_destination(Destination.parse(config.destinations[0]), config)
    assert storage.url == "b2://my-bucket/backups/postgresql"
    assert (storage.bucket_name, storage.prefix) == ("my-bucket", "backups/postgresql")
    assert (storage.part_size_bytes, storage.parts_in_flight) == (8 * 1024 * 1024, 3)
    assert storage.encryption is not None


def test_from_destination_without_credentials() -> None:
    config = StorageConfig(destinations=("b2://bucket/p",))
    with pytest.raises(StorageError) as raised:
        B2Storage.from_destination(Destination.parse("b2://bucket/p"), config)
    assert "B2_APPLICATION_KEY" in raised.value.hint


class PartRecorder:
    """Records (part number, size) of every ``b2_upload_part`` the simulator receives, and fails
    the parts numbered in ``fail`` (every attempt) as a broken B2 would."""

    def __init__(
        self, b2_sim: B2Sim, fail: frozenset[int] = frozenset(), break_once: int = 0
    ) -> None:
        self.sizes: dict[int, int] = {}
        self.attempts: dict[int, int] = {}
        upload_part = b2_sim.sim.upload_part

        def recording(
            url: str, token: str, number: int, length: int, sha1: str, *args: Any, **kwargs: Any
        ) -> Any:
            self.attempts[number] = self.attempts.get(number, 0) + 1
            if number in fail:
                raise b2exc.ServiceError("503 service unavailable")
            if number == break_once and self.attempts[number] == 1:
                args[0].read(length // 2)  # half the body sent, then the connection breaks
                raise b2exc.B2ConnectionError("connection reset by peer")
            self.sizes[number] = length
            return upload_part(url, token, number, length, sha1, *args, **kwargs)

        b2_sim.sim.upload_part = recording


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def test_parts_grow_so_10000_hold_a_terabyte(b2_sim: B2Sim) -> None:
    """Parts grow by the first part's size every ``parts_per_step`` parts: here B2's 10,000
    parts are 20 (the simulator refuses part 21, as B2 refuses part 10,001) of 1,000 bytes
    growing every 5, so a stream of 45 x the first part fits, and reads back whole."""
    b2_sim.sim.MAX_PART_ID = 20
    storage = b2_storage(b2_sim, parts_per_step=5, max_parts=20)
    parts = PartRecorder(b2_sim)
    data = payload(45 * B2_SIM_PART_SIZE + 123)
    assert storage.put("db/grown.dump", io.BytesIO(data)) == len(data)
    sizes = [parts.sizes[n] for n in sorted(parts.sizes)]
    assert sizes == [1000] * 5 + [2000] * 5 + [3000] * 5 + [4000] * 3 + [3123]
    with storage.open("db/grown.dump") as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert b2_sim.unfinished_large_files() == []
    # The real limits: from the smallest first part allowed, 10,000 parts hold 1 TB; from the
    # default 8 MiB, 1.5 TiB.
    assert capacity_bytes(MIN_PART_SIZE_MB * MIB, PARTS_PER_STEP, B2_MAX_PARTS) > 10**12
    assert capacity_bytes(8 * MIB, PARTS_PER_STEP, B2_MAX_PARTS) > 1536 * 1024 * MIB
    assert part_size(MAX_PART_SIZE_MB * MIB, PARTS_PER_STEP, B2_MAX_PARTS) <= 5 * 1000**3


def test_too_many_parts_stops_early_with_a_hint(b2_sim: B2Sim) -> None:
    storage = b2_storage(b2_sim, parts_per_step=100, max_parts=3)
    with pytest.raises(StorageError) as raised:
        storage.put("huge.dump", io.BytesIO(b"h" * 3500))
    assert "BACKUP_PART_SIZE_MB" in raised.value.hint
    assert storage.list() == []
    assert b2_sim.unfinished_large_files() == []


def test_failed_stream_after_grown_parts_cancels_the_large_file(b2_sim: B2Sim) -> None:
    storage = b2_storage(b2_sim, parts_per_step=2)
    parts = PartRecorder(b2_sim)
    stream = FailingStream(12 * B2_SIM_PART_SIZE)
    with pytest.raises(DumpFailed) as raised:
        storage.put("db/x.dump", stream)
    assert raised.value is stream.error
    assert max(parts.sizes.values()) > B2_SIM_PART_SIZE  # parts had grown
    assert b2_sim.unfinished_large_files() == []
    assert b2_sim.file_versions() == []


def test_part_broken_mid_body_is_sent_again_whole(b2_sim: B2Sim) -> None:
    """A part whose connection broke after half its body is sent again from its first byte."""
    storage = b2_storage(b2_sim, parts_per_step=2)
    parts = PartRecorder(b2_sim, break_once=3)
    data = payload(9 * B2_SIM_PART_SIZE + 7)
    assert storage.put("db/x.dump", io.BytesIO(data)) == len(data)
    assert parts.attempts[3] == 2
    with storage.open("db/x.dump") as stream:
        assert stream.read() == data


def test_part_failing_every_attempt_cancels_the_large_file(b2_sim: B2Sim) -> None:
    """b2sdk retries a part (5 attempts, a fresh upload URL each); when every one fails, the
    put is a storage error, no other part starts an attempt and nothing stays."""
    storage = b2_storage(b2_sim, parts_per_step=2)
    parts = PartRecorder(b2_sim, fail=frozenset({3}))
    with pytest.raises(StorageError) as raised:
        storage.put("db/x.dump", io.BytesIO(payload(20 * B2_SIM_PART_SIZE)))
    assert raised.value.exit_code == 4
    assert parts.attempts[3] == 5
    assert b2_sim.unfinished_large_files() == []
    assert b2_sim.file_versions() == []


def memory_bytes() -> int:
    """This process's resident memory but files: its heap and anonymous maps (shared ones too,
    as ``mmap.mmap(-1, n)`` makes), not the pages of files it maps."""
    with open("/proc/self/status", encoding="ascii") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return sum(int(fields[name].split()[0]) * 1024 for name in ("RssAnon", "RssShmem"))


def test_memory_is_parts_in_flight_times_the_growing_part(b2_sim: B2Sim, tmp_path: Path) -> None:
    """``put`` holds at most ``parts_in_flight`` parts (2 x the current part) and gives each
    back to the system when it is sent. Measured: the process's anonymous resident memory,
    sampled during the upload; the simulator keeps what it receives in files (file-backed
    maps, not anonymous memory), standing for the network."""
    bucket_sim = b2_sim.sim.bucket_id_to_bucket[b2_sim.bucket.id_]
    received = itertools.count()

    def post_to_file(stream: Any, content_length: int) -> Any:
        path = tmp_path / f"request-{next(received)}"
        with path.open("wb") as body:
            for chunk in iter(lambda: stream.read(64 * 1024), b""):
                body.write(chunk)
        if content_length == 0:
            return b""
        with path.open("rb") as body:
            return mmap.mmap(body.fileno(), 0, access=mmap.ACCESS_READ)

    bucket_sim._simulate_chunked_post = post_to_file
    part = 2 * MIB
    storage = b2_storage(b2_sim, part_size_bytes=part, parts_per_step=4)
    chunk = payload(MIB)

    class Generated:
        """16 parts of 2, 2, 2, 2, 4, ... 8 MiB (80 MiB), made on the fly: the source holds
        nothing."""

        left = 80 * MIB

        def read(self, size: int = -1) -> bytes:
            size = min(size if size >= 0 else MIB, MIB, self.left)
            self.left -= size
            return chunk[:size]

    baseline = memory_bytes()
    peak = baseline
    sending = threading.Event()
    sending.set()

    def sample() -> None:
        nonlocal peak
        while sending.is_set():
            peak = max(peak, memory_bytes())
            time.sleep(0.002)

    finish = b2_sim.sim.finish_large_file

    def stop_sampling(*args: Any, **kwargs: Any) -> Any:
        sending.clear()  # the simulator then joins the parts in memory: that is not the job
        sampler.join()
        return finish(*args, **kwargs)

    b2_sim.sim.finish_large_file = stop_sampling
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        assert storage.put("db/measured.dump", Generated()) == 80 * MIB
    finally:
        sending.clear()
        sampler.join()
    grown = peak - baseline
    # The last parts are 8 MiB: 2 of them, and some slack for the interpreter's own use.
    assert grown < 2.5 * 4 * part, f"{grown / MIB:.1f} MiB for 2 parts of {4 * part // MIB} MiB"


def test_abort_is_heard_while_every_part_is_busy(
    b2_sim: B2Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both part buffers are taken by uploads that hang; the dump is then aborted. The reader,
    waiting for a buffer, hears it (``read(0)`` raises) and ``put`` ends at once with the
    stream's own error, the large file cancelled, instead of waiting for the parts."""
    monkeypatch.setattr("backup.storage.parts.SLOT_POLL_S", 0.05)
    release = threading.Event()
    upload_part = b2_sim.sim.upload_part

    def hanging(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return upload_part(*args, **kwargs)

    b2_sim.sim.upload_part = hanging

    class Aborted(Exception):
        pass

    class AbortableStream:
        aborted = threading.Event()

        def read(self, size: int = -1) -> bytes:
            if self.aborted.is_set():
                raise Aborted("the run was stopped")
            return b"a" * (size if size > 0 else 0)

    stream = AbortableStream()
    threading.Timer(0.3, stream.aborted.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(Aborted):
            b2_storage(b2_sim).put("db/aborted.dump", stream)
        assert time.monotonic() - started < 3
        assert b2_sim.unfinished_large_files() == []
    finally:
        release.set()
    assert b2_sim.file_versions() == []
