"""S3-specific behaviour against a real SeaweedFS: credentials, retries, resume, headers.

Faults are injected with botocore's own event hooks on the client the backend uses, so every
request still goes to the real server unless a hook stands in for the network.
"""

from __future__ import annotations

import io
import random
import threading
import tracemalloc
import uuid
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, ResponseStreamingError

from backup.config import MIB, Destination, RetryConfig, S3Config, Secret, StorageConfig
from backup.errors import StorageError
from backup.storage.s3 import S3Storage
from backup.storage.s3.multipart import PARTS_PER_STEP, capacity_bytes
from backup.storage.s3.storage import S3_MAX_PARTS
from tests.contract.conftest import FAST_RETRY, S3_PART_SIZE
from tests.contract.test_storage_contract import DumpFailed, FailingStream
from tests.fixtures.seaweed import S3Server, free_ports


def make_storage(
    server: S3Server,
    bucket: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    endpoint_url: str | None = None,
    retry: RetryConfig = FAST_RETRY,
    parts_in_flight: int = 2,
    sse: str | None = None,
) -> S3Storage:
    """A backend built like the job builds it, under a fresh prefix of ``bucket``."""
    url = f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}/backups"
    config = StorageConfig(
        destinations=(url,),
        part_size_bytes=S3_PART_SIZE,
        parts_in_flight=parts_in_flight,
        retry=retry,
        s3=S3Config(
            access_key_id=access_key or server.access_key,
            secret_access_key=Secret(secret_key or server.secret_key),
            region=server.region,
            endpoint_url=endpoint_url or server.endpoint_url,
            sse=sse,
        ),
    )
    return S3Storage.from_destination(Destination.parse(url), config)


class Requests:
    """Records each request's operation name and headers as it is sent."""

    def __init__(self, storage: S3Storage) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        storage.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, event_name: str, **_: Any) -> None:
        headers = {
            k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()
        }
        self.sent.append((event_name.rsplit(".", 1)[-1], headers))

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.sent if name == operation)


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def test_wrong_secret_fails_at_once_with_a_hint(s3_server: S3Server, s3_bucket: str) -> None:
    secret = "this-secret-is-wrong-0123456789"
    storage = make_storage(s3_server, s3_bucket, secret_key=secret)
    sent = Requests(storage)
    with pytest.raises(StorageError) as raised:
        storage.put("k", io.BytesIO(b"x"))
    error = raised.value
    assert "AWS_SECRET_ACCESS_KEY" in error.hint
    assert secret not in str(error) + error.hint + repr(error)
    assert error.exit_code == 4
    assert len(sent.sent) == 1, "a permanent error must not be retried"


def test_unknown_access_key_hint(s3_server: S3Server, s3_bucket: str) -> None:
    storage = make_storage(s3_server, s3_bucket, access_key="NOSUCHKEY")
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "AWS_ACCESS_KEY_ID" in raised.value.hint


def test_missing_bucket_fails_at_once_naming_it(s3_server: S3Server) -> None:
    storage = make_storage(s3_server, "no-such-bucket-here")
    sent = Requests(storage)
    with pytest.raises(StorageError) as raised:
        storage.put("k", io.BytesIO(b"x"))
    assert "no-such-bucket-here" in raised.value.hint
    assert "BACKUP_DESTINATIONS" in raised.value.hint
    assert len(sent.sent) == 1


def test_unreachable_endpoint_is_retried_then_names_the_variable(s3_server: S3Server) -> None:
    [port] = free_ports(1)
    storage = make_storage(s3_server, "bucket", endpoint_url=f"http://127.0.0.1:{port}")
    sent = Requests(storage)
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "S3_ENDPOINT_URL" in raised.value.hint
    assert len(sent.sent) == FAST_RETRY.attempts


def test_part_upload_failing_twice_is_retried(s3_server: S3Server, s3_bucket: str) -> None:
    storage = make_storage(s3_server, s3_bucket)
    sent = Requests(storage)
    attempts = {"part 2": 0}
    lock = threading.Lock()

    def flaky_network(request: Any, **_: Any) -> None:
        # Part 2's first two attempts die on the wire; everything else reaches SeaweedFS.
        if "partNumber=2" in request.url:
            with lock:
                attempts["part 2"] += 1
                if attempts["part 2"] <= 2:
                    raise ConnectionClosedError(endpoint_url=request.url)

    storage.client.meta.events.register("before-send.s3.UploadPart", flaky_network)
    data = payload(int(S3_PART_SIZE * 2.5))
    assert storage.put("db/x.dump", io.BytesIO(data)) == len(data)
    assert attempts["part 2"] == 3
    assert sent.count("UploadPart") == 3  # the two failed attempts never reached the wire
    assert sent.count("CreateMultipartUpload") == 1  # the stream itself was not retried
    with storage.open("db/x.dump") as stream:
        assert stream.read() == data


def test_part_upload_failing_for_good_aborts(s3_server: S3Server, s3_bucket: str) -> None:
    storage = make_storage(s3_server, s3_bucket)

    def dead_network(request: Any, **_: Any) -> None:
        raise ConnectionClosedError(endpoint_url=request.url)

    storage.client.meta.events.register("before-send.s3.UploadPart", dead_network)
    with pytest.raises(StorageError) as raised:
        storage.put("db/x.dump", io.BytesIO(payload(int(S3_PART_SIZE * 3.5))))
    assert "upload db/x.dump" in raised.value.message
    assert storage.list() == []
    uploads = storage.client.list_multipart_uploads(Bucket=s3_bucket, Prefix=storage.prefix)
    assert uploads.get("Uploads", []) == []


def test_memory_stays_within_parts_in_flight(s3_server: S3Server, s3_bucket: str) -> None:
    """Bytes read from the stream but not yet confirmed never exceed part size x parts."""
    storage = make_storage(s3_server, s3_bucket, parts_in_flight=2)
    confirmed = {"bytes": 0}
    worst = {"bytes": 0}
    lock = threading.Lock()

    def on_part_done(**_: Any) -> None:
        with lock:  # every part is exactly S3_PART_SIZE here
            confirmed["bytes"] += S3_PART_SIZE

    storage.client.meta.events.register("after-call.s3.UploadPart", on_part_done)

    class Watched(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            with lock:
                worst["bytes"] = max(worst["bytes"], self.tell() - confirmed["bytes"])
            return data

    data = payload(S3_PART_SIZE * 6)
    assert storage.put("db/big.dump", Watched(data)) == len(data)
    assert worst["bytes"] <= 2 * S3_PART_SIZE


def test_no_part_buffer_outlives_its_upload(s3_server: S3Server, s3_bucket: str) -> None:
    """Every byte allocated in the job during a put (tracemalloc, all threads) stays within
    parts in flight x part size: the first part is not kept by the caller for the whole upload
    (it once was: a third part of memory)."""
    storage = make_storage(s3_server, s3_bucket, parts_in_flight=2)
    chunk = payload(MIB)

    class Generated:
        """8 parts' worth, made on the fly so the source holds nothing."""

        left = 8 * S3_PART_SIZE

        def read(self, size: int = -1) -> bytes:
            size = min(size if size >= 0 else MIB, MIB, self.left)
            self.left -= size
            return chunk[:size]

    tracemalloc.start()
    try:
        assert storage.put("db/traced.dump", Generated()) == 8 * S3_PART_SIZE
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * S3_PART_SIZE, f"{peak / MIB:.1f} MiB for 2 parts of 5 MiB"


def test_parts_grow_so_10000_hold_a_few_hundred_gb(s3_server: S3Server, s3_bucket: str) -> None:
    """Parts grow by the first part's size every ``parts_per_step`` parts (here 2, so a small
    stream shows it): 5, 5, 10, 10, 15 MiB, ... and the object reads back whole."""
    made = make_storage(s3_server, s3_bucket)
    storage = S3Storage(
        made.client, s3_bucket, made.prefix, part_size_bytes=S3_PART_SIZE, parts_per_step=2
    )
    sent = Requests(storage)
    data = payload(S3_PART_SIZE * 7 + 123)
    assert storage.put("db/grown.dump", io.BytesIO(data)) == len(data)
    sizes = [int(h["Content-Length"]) for name, h in sent.sent if name == "UploadPart"]
    assert sorted(sizes) == sorted(
        [S3_PART_SIZE, S3_PART_SIZE, 2 * S3_PART_SIZE, 2 * S3_PART_SIZE, S3_PART_SIZE + 123]
    )
    with storage.open("db/grown.dump") as stream:
        assert stream.read() == data
    # The job's defaults: 8 MiB growing every 1,000 parts holds more than 400 GiB in 10,000.
    assert capacity_bytes(8 * MIB, PARTS_PER_STEP, S3_MAX_PARTS) > 400 * 1024 * MIB


def test_failed_stream_after_parts_uploaded_aborts(s3_server: S3Server, s3_bucket: str) -> None:
    storage = make_storage(s3_server, s3_bucket)
    sent = Requests(storage)
    stream = FailingStream(int(S3_PART_SIZE * 3.2))
    with pytest.raises(DumpFailed) as raised:
        storage.put("db/x.dump", stream)
    assert raised.value is stream.error
    assert sent.count("AbortMultipartUpload") == 1
    assert sent.count("CompleteMultipartUpload") == 0


def test_broken_download_resumes_where_it_stopped(s3_server: S3Server, s3_bucket: str) -> None:
    storage = make_storage(s3_server, s3_bucket)
    data = payload(3 * MIB + 17)
    storage.put("db/x.dump", io.BytesIO(data))
    sent = Requests(storage)
    broken = {"done": False}

    class BreaksOnce:
        def __init__(self, body: Any) -> None:
            self.body, self.given = body, 0

        def read(self, size: int = -1) -> bytes:
            if self.given >= MIB:
                raise ResponseStreamingError(error="connection reset by peer")
            chunk = self.body.read(min(size, MIB - self.given))
            self.given += len(chunk)
            return chunk

        def close(self) -> None:
            self.body.close()

    def break_first_body(parsed: Any, **_: Any) -> None:
        if not broken["done"]:
            broken["done"] = True
            parsed["Body"] = BreaksOnce(parsed["Body"])

    storage.client.meta.events.register("after-call.s3.GetObject", break_first_body)
    stream = storage.open("db/x.dump")
    chunks = []
    while chunk := stream.read(256 * 1024):
        chunks.append(chunk)
    stream.close()
    assert b"".join(chunks) == data
    ranges = [h.get("Range") for name, h in sent.sent if name == "GetObject"]
    assert ranges == [None, f"bytes={MIB}-"]


def test_no_checksum_headers_on_uploads_and_md5_on_delete(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """B2's S3 API and others reject botocore's default CRC headers; DeleteObjects needs MD5."""
    storage = make_storage(s3_server, s3_bucket)
    sent = Requests(storage)
    storage.put("small", io.BytesIO(b"x"))
    storage.put("large", io.BytesIO(payload(S3_PART_SIZE + 1)))
    storage.delete(["small", "large"])
    for name, headers in sent.sent:
        if name in ("PutObject", "UploadPart"):
            assert not any(h.lower().startswith("x-amz-checksum") for h in headers), name
            assert "x-amz-sdk-checksum-algorithm" not in {h.lower() for h in headers}
    [delete_headers] = [h for name, h in sent.sent if name == "DeleteObjects"]
    assert "Content-MD5" in delete_headers
    assert storage.list() == []


def test_session_token_and_secret_stay_out_of_errors(s3_server: S3Server, s3_bucket: str) -> None:
    secret = "wrong-secret-that-must-not-leak"
    storage = make_storage(s3_server, s3_bucket, secret_key=secret)
    with pytest.raises(StorageError) as raised:
        storage.open("k")
    assert secret not in f"{raised.value} {raised.value.hint} {raised.value!r}"
    assert secret not in repr(storage.__dict__.get("url"))


@pytest.mark.parametrize("size", [10, S3_PART_SIZE + 5])
def test_s3_sse_is_requested(s3_server: S3Server, s3_bucket: str, size: int) -> None:
    """S3_SSE=AES256 reaches PutObject and CreateMultipartUpload alike."""
    storage = make_storage(s3_server, s3_bucket, sse="AES256")
    storage.put("enc", io.BytesIO(b"e" * size))
    head = storage.client.head_object(Bucket=s3_bucket, Key=f"{storage.prefix}/enc")
    assert head.get("ServerSideEncryption") == "AES256"
    with storage.open("enc") as stream:
        assert stream.read() == b"e" * size


def test_too_many_parts_aborts_with_a_hint(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("backup.storage.s3.storage.S3_MAX_PARTS", 2)
    storage = make_storage(s3_server, s3_bucket)
    with pytest.raises(StorageError) as raised:
        storage.put("huge.dump", io.BytesIO(payload(S3_PART_SIZE * 2 + 1)))
    assert "BACKUP_PART_SIZE_MB" in raised.value.hint
    assert storage.list() == []
    uploads = storage.client.list_multipart_uploads(Bucket=s3_bucket, Prefix=storage.prefix)
    assert uploads.get("Uploads", []) == []


def test_many_folders_listed_at_once_reuse_the_pooled_connections(
    s3_server: S3Server, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The start and end of a run over many databases list their folders and read their
    manifests ``retry.REQUESTS_IN_FLIGHT`` at once: the client's pool holds that many
    connections, so none is opened and dropped with urllib3's "pool is full" warning."""
    from backup import manifest
    from backup.manifest import Scope

    storage = make_storage(s3_server, s3_bucket)
    databases = [f"tenant_{n:02d}" for n in range(40)]
    for database in databases:
        storage.put(f"{database}/x.dump.zst", io.BytesIO(b"x"))
    caplog.set_level("WARNING")
    for _ in range(3):
        found = manifest.scoped_objects(storage, Scope(frozenset(databases)))
        assert len(found) == len(databases)
    assert "pool is full" not in caplog.text
