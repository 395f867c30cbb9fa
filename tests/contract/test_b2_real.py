"""The contract's core against real Backblaze B2, run only when a test bucket is configured.

Set B2_TEST_KEY_ID, B2_TEST_APPLICATION_KEY and B2_TEST_BUCKET (a bucket you can write to; a
key restricted to that bucket is the best test). Everything is written under a fresh prefix
``pgbackup-contract-test/<random>/`` and every version under it is deleted at the end. Real B2
parts are 5 MB at least, so the large-file tests move about 25 MB.
"""

from __future__ import annotations

import io
import os
import random
import uuid
from collections.abc import Iterator

import pytest

from backup.config import MIB, B2Config, Destination, RetryConfig, Secret, StorageConfig
from backup.errors import ObjectNotFound
from backup.storage.b2 import B2Storage
from tests.contract.test_storage_contract import DumpFailed, FailingStream

VARIABLES = ("B2_TEST_KEY_ID", "B2_TEST_APPLICATION_KEY", "B2_TEST_BUCKET")
PART_SIZE = 5 * MIB

pytestmark = pytest.mark.skipif(
    not all(os.environ.get(name) for name in VARIABLES),
    reason="real B2 test: set B2_TEST_KEY_ID, B2_TEST_APPLICATION_KEY and B2_TEST_BUCKET to run",
)


@pytest.fixture
def real_b2() -> Iterator[B2Storage]:
    url = f"b2://{os.environ['B2_TEST_BUCKET']}/pgbackup-contract-test/{uuid.uuid4().hex[:12]}"
    config = StorageConfig(
        destinations=(url,),
        part_size_bytes=PART_SIZE,
        retry=RetryConfig(attempts=3, max_seconds=60.0),
        b2=B2Config(
            key_id=os.environ["B2_TEST_KEY_ID"],
            application_key=Secret(os.environ["B2_TEST_APPLICATION_KEY"]),
        ),
    )
    storage = B2Storage.from_destination(Destination.parse(url), config)
    try:
        yield storage
    finally:
        storage.cleanup_incomplete()
        storage.delete(o.key for o in storage.list())


def test_round_trip_small_and_large(real_b2: B2Storage) -> None:
    small = b"a small dump"
    large = random.Random(1).randbytes(int(PART_SIZE * 2.2))
    assert real_b2.put("db/small.dump", io.BytesIO(small)) == len(small)
    assert real_b2.put("db/large.dump", io.BytesIO(large)) == len(large)
    with real_b2.open("db/large.dump") as stream:
        assert stream.read() == large
    assert [(o.key, o.size) for o in real_b2.list("db/")] == [
        ("db/large.dump", len(large)),
        ("db/small.dump", len(small)),
    ]


def test_failed_stream_leaves_nothing(real_b2: B2Storage) -> None:
    stream = FailingStream(int(PART_SIZE * 2.5))
    with pytest.raises(DumpFailed) as raised:
        real_b2.put("db/failed.dump", stream)
    assert raised.value is stream.error
    assert real_b2.list() == []
    with pytest.raises(ObjectNotFound):
        real_b2.open("db/failed.dump")
    assert real_b2.cleanup_incomplete() == 0


def test_delete_removes_every_version(real_b2: B2Storage) -> None:
    real_b2.put("db/x.dump", io.BytesIO(b"one"))
    real_b2.put("db/x.dump", io.BytesIO(b"two"))
    real_b2.delete(["db/x.dump", "db/missing.dump"])
    bucket = real_b2._get_bucket()
    name = f"{real_b2.prefix}/db/x.dump"
    assert [v for v in bucket.list_file_versions(name) if v.file_name == name] == []
