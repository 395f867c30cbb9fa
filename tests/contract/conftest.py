"""The storage contract harness: one ``backend`` fixture, parametrized over every backend.

Each ``Harness`` gives a fresh, empty destination (a new directory, S3 bucket, B2 bucket, GCS
bucket or Azure container, under the prefix ``backups/pg``) plus the backend-specific probes
the contract needs to check what ``list`` cannot see: unfinished uploads and every stored
version of a key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backup.config import (
    MIB,
    AzureConfig,
    Destination,
    GCSConfig,
    RetryConfig,
    S3Config,
    Secret,
    StorageConfig,
)
from backup.storage.azure import AzureStorage
from backup.storage.b2 import B2Storage
from backup.storage.gcs import GCSStorage
from backup.storage.local import LocalStorage
from backup.storage.s3 import S3Storage
from tests.fixtures.b2sim import B2Sim, new_b2_sim
from tests.fixtures.clouds import AzuriteServer, GCSServer
from tests.fixtures.seaweed import S3Server

PREFIX = "backups/pg"
# Fast retries: a test that exercises them should not sleep for seconds.
FAST_RETRY = RetryConfig(attempts=4, max_seconds=10.0, initial_backoff_s=0.01)
S3_PART_SIZE = 5 * MIB  # S3's minimum part size, which SeaweedFS enforces like AWS
B2_SIM_PART_SIZE = 1000  # the simulator accepts parts from 200 bytes
GCS_PART_SIZE = 256 * 1024  # a resumable upload's chunks are multiples of 256 KiB
AZURE_PART_SIZE = 64 * 1024  # Azure takes blocks of any size
# What a crashed GCS upload leaves (a resumable session) cannot be listed by anyone: these
# contract tests have nothing to observe there. tests/contract/test_gcs.py shows instead that
# an abandoned session leaves nothing visible and that cleanup_incomplete finds nothing.
GCS_NOTHING_TO_CLEAN = (
    "test_cleanup_incomplete_removes_a_crashed_upload",
    "test_cleanup_incomplete_leaves_a_young_upload",
    "test_cleanup_incomplete_stays_in_its_folder",
)


@dataclass
class Harness:
    """A fresh destination of one backend, and probes below the Storage interface."""

    name: str
    storage: Any
    part_size: int
    incomplete: Callable[[], int]
    """How many unfinished uploads (multipart, large file, *.partial) exist under the prefix."""
    versions: Callable[[str], int]
    """How many stored versions of relative ``key`` exist, hidden or not."""
    abandon_upload: Callable[[str], None]
    """Leave an unfinished upload of ``key``, as a run killed mid-upload would."""
    sibling: Callable[[str], Any]
    """Another Storage on the same bucket/directory with a different prefix."""


def local_harness(root: Path) -> Harness:
    def storage_at(prefix: str) -> LocalStorage:
        return LocalStorage(root / prefix)

    storage = storage_at(PREFIX)

    def abandon(key: str) -> None:
        path = storage.root / f"{key}.partial"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a dump")

    return Harness(
        name="local",
        storage=storage,
        part_size=1 * MIB,
        incomplete=lambda: (
            len(list(storage.root.rglob("*.partial"))) if storage.root.exists() else 0
        ),
        versions=lambda key: int((storage.root / key).exists()),
        abandon_upload=abandon,
        sibling=storage_at,
    )


def s3_harness(server: S3Server, bucket: str) -> Harness:
    # Creating a SeaweedFS bucket takes about 2 s (it grows volumes for it), so tests share
    # one bucket and each gets its own top-level directory in it.
    top = f"t-{uuid.uuid4().hex[:12]}"
    prefix = f"{top}/{PREFIX}"
    config = StorageConfig(
        destinations=(f"s3://{bucket}/{prefix}",),
        part_size_bytes=S3_PART_SIZE,
        retry=FAST_RETRY,
        s3=S3Config(
            access_key_id=server.access_key,
            secret_access_key=Secret(server.secret_key),
            region=server.region,
            endpoint_url=server.endpoint_url,
        ),
    )

    def storage_at(prefix: str) -> S3Storage:
        # Built the way the job builds it, from a destination URL and the parsed config.
        return S3Storage.from_destination(
            Destination.parse(f"s3://{bucket}/{top}/{prefix}"), config
        )

    storage = storage_at(PREFIX)
    client = storage.client  # boto3 clients take 0.3 s to build: probe with the same one

    def incomplete() -> int:
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
        return len(uploads)

    def versions(key: str) -> int:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{key}")
        return sum(1 for item in listed.get("Contents", []) if item["Key"] == f"{prefix}/{key}")

    def abandon(key: str) -> None:
        upload = client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/{key}")
        client.upload_part(
            Bucket=bucket,
            Key=f"{prefix}/{key}",
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"x" * S3_PART_SIZE,
        )

    return Harness(
        name="s3",
        storage=storage,
        part_size=S3_PART_SIZE,
        incomplete=incomplete,
        versions=versions,
        abandon_upload=abandon,
        sibling=storage_at,
    )


def b2_storage(sim: B2Sim, prefix: str = PREFIX, **kwargs: Any) -> B2Storage:
    options: dict[str, Any] = {"part_size_bytes": B2_SIM_PART_SIZE, "retry": FAST_RETRY}
    options.update(kwargs)
    return B2Storage(
        sim.api, sim.bucket_name, prefix, url=f"b2://{sim.bucket_name}/{prefix}", **options
    )


def b2_harness(sim: B2Sim) -> Harness:
    def versions(key: str) -> int:
        name = f"{PREFIX}/{key}"
        return sum(1 for file_name, _action in sim.file_versions(name) if file_name == name)

    def abandon(key: str) -> None:
        # The simulator's own timestamps count from 1970; a crashed run's upload starts now.
        sim.api.session.start_large_file(
            sim.bucket.id_,
            f"{PREFIX}/{key}",
            "application/octet-stream",
            {},
            custom_upload_timestamp=int(time.time() * 1000),
        )

    return Harness(
        name="b2",
        storage=b2_storage(sim),
        part_size=B2_SIM_PART_SIZE,
        incomplete=lambda: len(sim.unfinished_large_files(PREFIX)),
        versions=versions,
        abandon_upload=abandon,
        sibling=lambda prefix: b2_storage(sim, prefix),
    )


def gcs_config(server: GCSServer, bucket: str, prefix: str, **kwargs: Any) -> StorageConfig:
    options: dict[str, Any] = {"part_size_bytes": GCS_PART_SIZE, "retry": FAST_RETRY}
    options.update(kwargs)
    return StorageConfig(
        destinations=(f"gs://{bucket}/{prefix}",),
        gcs=GCSConfig(endpoint_url=server.endpoint_url, emulator=True),
        **options,
    )


def gcs_harness(server: GCSServer, bucket: str) -> Harness:
    def storage_at(prefix: str) -> GCSStorage:
        config = gcs_config(server, bucket, prefix)
        return GCSStorage.from_destination(Destination.parse(f"gs://{bucket}/{prefix}"), config)

    storage = storage_at(PREFIX)

    def versions(key: str) -> int:
        name = f"{PREFIX}/{key}"
        return sum(
            1 for blob in storage.client.list_blobs(bucket, prefix=name) if blob.name == name
        )

    def abandon(key: str) -> None:
        blob = storage.bucket.blob(f"{PREFIX}/{key}")
        session_url = blob.create_resumable_upload_session(content_type="application/octet-stream")
        response = storage.session.put(
            session_url,
            data=b"x" * GCS_PART_SIZE,
            headers={"Content-Range": f"bytes 0-{GCS_PART_SIZE - 1}/*"},
        )
        assert response.status_code == 308

    return Harness(
        name="gcs",
        storage=storage,
        part_size=GCS_PART_SIZE,
        incomplete=lambda: 0,  # a resumable session cannot be listed (see GCS_NOTHING_TO_CLEAN)
        versions=versions,
        abandon_upload=abandon,
        sibling=storage_at,
    )


def azure_config(
    server: AzuriteServer, container: str, prefix: str, **kwargs: Any
) -> StorageConfig:
    options: dict[str, Any] = {"part_size_bytes": AZURE_PART_SIZE, "retry": FAST_RETRY}
    options.update(kwargs)
    return StorageConfig(
        destinations=(f"azure://{container}/{prefix}",),
        azure=AzureConfig(
            account_name=server.account,
            account_key=Secret(server.key),
            endpoint_url=server.endpoint_url,
        ),
        **options,
    )


def azure_harness(server: AzuriteServer, container: str) -> Harness:
    def storage_at(prefix: str) -> AzureStorage:
        config = azure_config(server, container, prefix)
        url = f"azure://{container}/{prefix}"
        return AzureStorage.from_destination(Destination.parse(url), config)

    storage = storage_at(PREFIX)
    client = storage.container

    def incomplete() -> int:
        committed = {b.name for b in client.list_blobs(name_starts_with=f"{PREFIX}/")}
        every = client.list_blobs(name_starts_with=f"{PREFIX}/", include=["uncommittedblobs"])
        return sum(1 for b in every if b.name not in committed)

    def versions(key: str) -> int:
        name = f"{PREFIX}/{key}"
        return sum(1 for b in client.list_blobs(name_starts_with=name) if b.name == name)

    def abandon(key: str) -> None:
        blob = client.get_blob_client(f"{PREFIX}/{key}")
        blob.stage_block("YmxvY2stMDAwMDAx", b"x" * AZURE_PART_SIZE)

    return Harness(
        name="azure",
        storage=storage,
        part_size=AZURE_PART_SIZE,
        incomplete=incomplete,
        versions=versions,
        abandon_upload=abandon,
        sibling=storage_at,
    )


@pytest.fixture(scope="session")
def s3_bucket(s3_server: S3Server) -> str:
    """One bucket shared by the S3 contract tests (each works under its own prefix)."""
    return s3_server.create_bucket()


@pytest.fixture(params=["local", "s3", "b2", "gcs", "azure"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    """One fresh destination per test, for each backend in turn."""
    if request.param == "gcs":
        if getattr(request.node, "originalname", "") in GCS_NOTHING_TO_CLEAN:
            pytest.skip("gcs: a crashed resumable session cannot be listed, so not cleaned")
        server = request.getfixturevalue("gcs_server")
        return gcs_harness(server, server.create_bucket())
    if request.param == "azure":
        server = request.getfixturevalue("azurite")
        return azure_harness(server, server.create_container())
    if request.param == "local":
        return local_harness(tmp_path / "dest")
    if request.param == "s3":
        # Only S3 tests start SeaweedFS (session-wide, once).
        return s3_harness(
            request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        )
    return b2_harness(new_b2_sim())
