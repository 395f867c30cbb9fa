"""GCS-specific behaviour against gcp-storage-emulator: a service-account key end to end (its
token fetched from a local OAuth endpoint), a refused key, a missing bucket, chunks retried on
their own, failed and abandoned uploads leaving nothing.

Faults on the wire are injected by wrapping the backend's own HTTP session (the network edge);
every request that is not failed still reaches the emulator.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from backup.config import Destination, GCSConfig, StorageConfig
from backup.errors import ObjectNotFound, StorageError
from backup.storage.gcs import GCSStorage
from tests.contract.conftest import FAST_RETRY, GCS_PART_SIZE, PREFIX, gcs_config, gcs_harness
from tests.contract.test_storage_contract import DumpFailed, FailingStream
from tests.fixtures.clouds import GCSServer
from tests.fixtures.http import RecordingServer
from tests.fixtures.http import recording_server as recording_server

TOKEN_PATH = "/token"


def key_file(tmp_path: Path, token_uri: str) -> Path:
    """A service-account key file of the real shape, with a fresh RSA key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "0123456789abcdef",
                "private_key": pem,
                "client_email": "pgbackup@test-project.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return path


def keyed_storage(server: GCSServer, bucket: str, path: Path) -> GCSStorage:
    url = f"gs://{bucket}/{PREFIX}"
    config = StorageConfig(
        destinations=(url,),
        part_size_bytes=GCS_PART_SIZE,
        retry=FAST_RETRY,
        gcs=GCSConfig(credentials_file=str(path), endpoint_url=server.endpoint_url),
    )
    return GCSStorage.from_destination(Destination.parse(url), config)


class Wire:
    """Records (method, url) of every request the backend's session sends, and fails the ones
    ``fail`` chooses with a connection error before they leave."""

    def __init__(self, storage: GCSStorage) -> None:
        self.sent: list[tuple[str, str]] = []
        self.failed = 0
        self.fail: Any = lambda method, url, kwargs: False
        session = storage.session
        original = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.sent.append((method, url))
            if self.fail(method, url, kwargs):
                self.failed += 1
                raise requests.ConnectionError("connection reset by the test")
            return original(method, url, *args, **kwargs)

        session.request = request


def chunk_puts(method: str, url: str, kwargs: dict[str, Any]) -> bool:
    headers = kwargs.get("headers") or {}
    return method == "PUT" and "upload_id" in url and "*" in headers.get("Content-Range", "")


def test_a_service_account_key_is_used_end_to_end(
    gcs_server: GCSServer, recording_server: RecordingServer, tmp_path: Path
) -> None:
    """The key signs a JWT, the token endpoint answers, every request carries the token."""
    recording_server.respond(
        TOKEN_PATH, body={"access_token": "ya29.test-token", "expires_in": 3600}
    )
    storage = keyed_storage(
        gcs_server,
        gcs_server.create_bucket(),
        key_file(tmp_path, recording_server.url + TOKEN_PATH),
    )
    wire = Wire(storage)
    data = random.Random(1).randbytes(GCS_PART_SIZE * 2 + 100)
    assert storage.put("db/x.dump", io.BytesIO(data)) == len(data)
    assert storage.open("db/x.dump").read() == data
    grants = recording_server.requests_to(TOKEN_PATH)
    assert grants
    for grant in grants:
        assert b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in grant.body
    assert all(url.startswith(gcs_server.endpoint_url) for _, url in wire.sent)


def test_a_refused_key_fails_at_once_with_a_hint(
    gcs_server: GCSServer, recording_server: RecordingServer, tmp_path: Path
) -> None:
    recording_server.respond(
        TOKEN_PATH, status=400, body={"error": "invalid_grant", "error_description": "bad JWT"}
    )
    path = key_file(tmp_path, recording_server.url + TOKEN_PATH)
    storage = keyed_storage(gcs_server, gcs_server.create_bucket(), path)
    with pytest.raises(StorageError) as raised:
        storage.put("k", io.BytesIO(b"x"))
    error = raised.value
    assert error.exit_code == 4
    assert "GOOGLE_APPLICATION_CREDENTIALS" in error.hint
    assert "PRIVATE KEY" not in str(error) + error.hint
    assert len(recording_server.requests_to(TOKEN_PATH)) == 1, "a refused key is not retried"


def test_missing_bucket_fails_at_once_naming_it(gcs_server: GCSServer) -> None:
    storage = gcs_harness(gcs_server, "no-such-bucket-here").storage
    wire = Wire(storage)
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "no-such-bucket-here" in raised.value.hint
    assert "BACKUP_DESTINATIONS" in raised.value.hint
    assert len(wire.sent) == 1


def test_unreachable_endpoint_is_retried_then_names_the_variable(tmp_path: Path) -> None:
    from tests.fixtures.seaweed import free_ports

    [port] = free_ports(1)
    url = f"gs://bucket/{PREFIX}"
    config = StorageConfig(
        destinations=(url,),
        retry=FAST_RETRY,
        gcs=GCSConfig(endpoint_url=f"http://127.0.0.1:{port}", emulator=True),
    )
    storage = GCSStorage.from_destination(Destination.parse(url), config)
    wire = Wire(storage)
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "GCS_ENDPOINT_URL" in raised.value.hint
    assert len(wire.sent) == FAST_RETRY.attempts


def test_a_chunk_failing_twice_is_retried_alone(gcs_server: GCSServer) -> None:
    harness = gcs_harness(gcs_server, gcs_server.create_bucket())
    wire = Wire(harness.storage)
    wire.fail = lambda method, url, kwargs: chunk_puts(method, url, kwargs) and wire.failed < 2
    data = random.Random(2).randbytes(int(GCS_PART_SIZE * 3.5))
    assert harness.storage.put("db/x.dump", io.BytesIO(data)) == len(data)
    assert wire.failed == 2
    sessions = [url for method, url in wire.sent if method == "POST" and "resumable" in url]
    assert len(sessions) == 1, "the stream itself was not retried"
    assert harness.storage.open("db/x.dump").read() == data


def test_a_chunk_failing_for_good_leaves_nothing(gcs_server: GCSServer) -> None:
    harness = gcs_harness(gcs_server, gcs_server.create_bucket())
    harness.storage.put("db/x.dump", io.BytesIO(b"the old object"))
    wire = Wire(harness.storage)
    wire.fail = chunk_puts
    with pytest.raises(StorageError) as raised:
        harness.storage.put("db/x.dump", io.BytesIO(b"n" * (GCS_PART_SIZE * 3)))
    assert "upload db/x.dump" in raised.value.message
    assert "upload_id" not in str(raised.value), "a session URL is a credential"
    assert [("DELETE" in m) for m, _ in wire.sent][-1], "the session was cancelled"
    assert [o.key for o in harness.storage.list()] == ["db/x.dump"]
    assert harness.storage.open("db/x.dump").read() == b"the old object"


def test_an_abandoned_session_leaves_nothing_visible(gcs_server: GCSServer) -> None:
    """What a killed run leaves: a session with a chunk in it. No listing shows it, no read
    finds it, cleanup has nothing to remove, and the next upload of the key works."""
    harness = gcs_harness(gcs_server, gcs_server.create_bucket())
    harness.abandon_upload("db/crashed.dump")
    assert harness.storage.list() == []
    with pytest.raises(ObjectNotFound):
        harness.storage.open("db/crashed.dump")
    assert harness.storage.cleanup_incomplete("db/", older_than_s=0) == 0
    assert harness.storage.put("db/crashed.dump", io.BytesIO(b"v2")) == 2
    assert harness.storage.open("db/crashed.dump").read() == b"v2"


def test_a_failed_stream_cancels_its_session(gcs_server: GCSServer) -> None:
    harness = gcs_harness(gcs_server, gcs_server.create_bucket())
    wire = Wire(harness.storage)
    stream = FailingStream(GCS_PART_SIZE * 2 + 10)
    with pytest.raises(DumpFailed):
        harness.storage.put("db/x.dump", stream)
    assert wire.sent[-1][0] == "DELETE"
    assert harness.storage.list() == []


def test_the_environment_changes_nothing(
    gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend uses what its configuration says: STORAGE_EMULATOR_HOST (read by
    config/clouds.py alone) and API_ENDPOINT_OVERRIDE in its environment change nothing."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("API_ENDPOINT_OVERRIDE", "http://127.0.0.1:9")
    bucket = gcs_server.create_bucket()
    storage = GCSStorage.from_destination(
        Destination.parse(f"gs://{bucket}/p"), gcs_config(gcs_server, bucket, "p")
    )
    storage.put("k", io.BytesIO(b"v"))
    assert [o.key for o in storage.list()] == ["k"]


def test_memory_stays_within_one_chunk(gcs_server: GCSServer) -> None:
    """Bytes read from the stream but not yet held by the server never exceed one chunk: the
    next chunk is read only once the server has confirmed the last one."""
    harness = gcs_harness(gcs_server, gcs_server.create_bucket())
    session = harness.storage.session
    original = session.request
    held = {"confirmed": 0, "worst": 0}

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = original(method, url, *args, **kwargs)
        got = response.headers.get("Range", "")
        if method == "PUT" and response.status_code == 308 and got.startswith("bytes=0-"):
            held["confirmed"] = int(got.removeprefix("bytes=0-")) + 1
        return response

    session.request = request

    class Watched(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            held["worst"] = max(held["worst"], self.tell() - held["confirmed"])
            return data

    data = random.Random(5).randbytes(GCS_PART_SIZE * 8)
    assert harness.storage.put("db/big.dump", Watched(data)) == len(data)
    assert held["worst"] <= GCS_PART_SIZE
    assert harness.storage.open("db/big.dump").read() == data


def test_a_key_given_as_json_is_used_end_to_end(
    gcs_server: GCSServer, recording_server: RecordingServer, tmp_path: Path
) -> None:
    """GOOGLE_APPLICATION_CREDENTIALS holding the key's JSON (GCSConfig.credentials_json):
    the key signs the token request, the token goes with every request."""
    from backup.config import Secret

    recording_server.respond(TOKEN_PATH, body={"access_token": "ya29.json", "expires_in": 3600})
    text = key_file(tmp_path, recording_server.url + TOKEN_PATH).read_text()
    bucket = gcs_server.create_bucket()
    url = f"gs://{bucket}/{PREFIX}"
    config = StorageConfig(
        destinations=(url,),
        part_size_bytes=GCS_PART_SIZE,
        retry=FAST_RETRY,
        gcs=GCSConfig(credentials_json=Secret(text), endpoint_url=gcs_server.endpoint_url),
    )
    storage = GCSStorage.from_destination(Destination.parse(url), config)
    headers: list[str] = []
    original = storage.session.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = original(method, url, *args, **kwargs)
        headers.append(response.request.headers.get("Authorization", ""))
        return response

    storage.session.request = request
    storage.put("db/x.dump", io.BytesIO(b"data"))
    assert storage.open("db/x.dump").read() == b"data"
    assert recording_server.requests_to(TOKEN_PATH)
    assert headers and all(h == "Bearer ya29.json" for h in headers)
