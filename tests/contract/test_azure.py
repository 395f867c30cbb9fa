"""Azure-specific behaviour against Azurite: a wrong key, a SAS token, a missing container,
blocks retried on their own, failed uploads leaving nothing, a crashed overwrite's blocks.

Faults on the wire are injected by wrapping ``BlobClient.stage_block`` (the network edge): the
blocks that are not failed still reach Azurite.
"""

from __future__ import annotations

import io
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import BlobClient, ContainerSasPermissions, generate_container_sas

from backup.config import AzureConfig, Destination, Secret, StorageConfig
from backup.errors import StorageError
from backup.storage.azure import AzureStorage
from tests.contract.conftest import AZURE_PART_SIZE, FAST_RETRY, PREFIX, azure_harness
from tests.contract.test_storage_contract import DumpFailed, FailingStream
from tests.fixtures.clouds import AzuriteServer


def storage_with(server: AzuriteServer, container: str, **azure: Any) -> AzureStorage:
    url = f"azure://{container}/{PREFIX}"
    config = StorageConfig(
        destinations=(url,),
        part_size_bytes=AZURE_PART_SIZE,
        retry=FAST_RETRY,
        azure=AzureConfig(**azure),
    )
    return AzureStorage.from_destination(Destination.parse(url), config)


class FlakyBlocks:
    """``stage_block`` failing ``times`` times (every time: None) before the request leaves."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, times: int | None) -> None:
        self.calls = 0
        self.failed = 0
        lock = threading.Lock()
        original = BlobClient.stage_block

        def stage_block(client: BlobClient, *args: Any, **kwargs: Any) -> Any:
            with lock:
                self.calls += 1
                fail = times is None or self.failed < times
                if fail:
                    self.failed += 1
            if fail:
                raise ServiceRequestError("connection reset by the test")
            return original(client, *args, **kwargs)

        monkeypatch.setattr(BlobClient, "stage_block", stage_block)


def test_a_wrong_key_fails_at_once_with_a_hint(azurite: AzuriteServer) -> None:
    wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    storage = storage_with(
        azurite,
        azurite.create_container(),
        account_name=azurite.account,
        account_key=Secret(wrong),
        endpoint_url=azurite.endpoint_url,
    )
    with pytest.raises(StorageError) as raised:
        storage.put("k", io.BytesIO(b"x"))
    error = raised.value
    assert error.exit_code == 4
    assert "AZURE_STORAGE_KEY" in error.hint
    assert wrong not in str(error) + error.hint + repr(error)


def test_a_sas_token_works(azurite: AzuriteServer) -> None:
    container = azurite.create_container()
    sas = generate_container_sas(
        azurite.account,
        container,
        account_key=azurite.key,
        permission=ContainerSasPermissions(
            read=True, add=True, create=True, write=True, delete=True, list=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    storage = storage_with(
        azurite,
        container,
        account_name=azurite.account,
        sas_token=Secret("?" + sas),
        endpoint_url=azurite.endpoint_url,
    )
    data = random.Random(3).randbytes(AZURE_PART_SIZE * 2 + 5)
    assert storage.put("db/x.dump", io.BytesIO(data)) == len(data)
    assert storage.open("db/x.dump").read() == data
    storage.delete(["db/x.dump"])
    assert storage.list() == []


def test_missing_container_fails_at_once_naming_it(azurite: AzuriteServer) -> None:
    storage = storage_with(
        azurite, "no-such-container", connection_string=Secret(azurite.connection_string)
    )
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "no-such-container" in raised.value.hint
    assert "BACKUP_DESTINATIONS" in raised.value.hint


def test_a_block_failing_twice_is_retried_alone(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = azure_harness(azurite, azurite.create_container())
    flaky = FlakyBlocks(monkeypatch, times=2)
    data = random.Random(4).randbytes(int(AZURE_PART_SIZE * 3.5))
    assert harness.storage.put("db/x.dump", io.BytesIO(data)) == len(data)
    assert flaky.failed == 2
    assert flaky.calls == 4 + 2  # four blocks, two of them sent a second or third time
    assert harness.storage.open("db/x.dump").read() == data


def test_a_block_failing_for_good_leaves_nothing(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = azure_harness(azurite, azurite.create_container())
    FlakyBlocks(monkeypatch, times=None)
    with pytest.raises(StorageError) as raised:
        harness.storage.put("db/x.dump", io.BytesIO(b"n" * (AZURE_PART_SIZE * 3)))
    assert "upload db/x.dump" in raised.value.message
    assert harness.storage.list() == []
    assert harness.incomplete() == 0


def test_a_crashed_overwrite_keeps_the_blob_and_its_stray_blocks(azurite: AzuriteServer) -> None:
    """Blocks staged next to a committed blob cannot be removed without it: cleanup leaves
    both (Azure drops the blocks after a week)."""
    harness = azure_harness(azurite, azurite.create_container())
    harness.storage.put("db/x.dump", io.BytesIO(b"committed"))
    harness.abandon_upload("db/x.dump")
    assert harness.storage.cleanup_incomplete("db/", older_than_s=0) == 0
    assert harness.storage.open("db/x.dump").read() == b"committed"


def test_a_failed_stream_discards_its_blocks(azurite: AzuriteServer) -> None:
    harness = azure_harness(azurite, azurite.create_container())
    with pytest.raises(DumpFailed):
        harness.storage.put("db/x.dump", FailingStream(AZURE_PART_SIZE * 3 + 10))
    assert harness.incomplete() == 0
    assert harness.storage.list() == []


def test_memory_stays_within_one_block(
    azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes read from the stream but not yet staged never exceed one block: the next block is
    read only once the last one is staged."""
    harness = azure_harness(azurite, azurite.create_container())
    held = {"confirmed": 0, "worst": 0}
    lock = threading.Lock()
    original = BlobClient.stage_block

    def stage_block(client: BlobClient, block_id: str, data: Any, **kwargs: Any) -> Any:
        result = original(client, block_id, data, **kwargs)
        with lock:
            held["confirmed"] += len(data)
        return result

    monkeypatch.setattr(BlobClient, "stage_block", stage_block)

    class Watched(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            with lock:
                held["worst"] = max(held["worst"], self.tell() - held["confirmed"])
            return data

    data = random.Random(6).randbytes(AZURE_PART_SIZE * 8)
    assert harness.storage.put("db/big.dump", Watched(data)) == len(data)
    assert held["worst"] <= AZURE_PART_SIZE
    assert harness.storage.open("db/big.dump").read() == data


DEFERRED_PROBE = """
import sys
import backup.storage.azure
assert "cryptography" not in sys.modules, "azure-storage-blob loaded cryptography"
from azure.storage.blob import _encryption
key, nonce = bytes(range(32)), bytes(12)
sealed = _encryption.AESGCM(key).encrypt(nonce, b"block", None)
assert "cryptography" in sys.modules  # the deferred name imported the real module when used
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
assert AESGCM(key).decrypt(nonce, sealed, None) == b"block"
assert len(_encryption.PKCS7(128).padder().update(b"x" * 16)) == 16
print("deferred ok")
"""


def test_the_library_is_imported_without_cryptography_until_it_is_used() -> None:
    """azure-storage-blob's client-side encryption (never configured here) is the only user
    of cryptography: imported without it (7 MiB less, library.py), its names still work when
    called, and a later import of cryptography (age, msal) gets the real modules."""
    import subprocess
    import sys

    from tests.conftest import REPO

    result = subprocess.run(
        [sys.executable, "-c", DEFERRED_PROBE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "deferred ok" in result.stdout
