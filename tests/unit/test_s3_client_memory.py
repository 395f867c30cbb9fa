"""The S3 client's model files (the S3 API model, its endpoint rules, the partitions) stay in
memory for the client's life: they are loaded as plain dicts, 4 MiB less than botocore's
``OrderedDict``s (a backup to S3 peaks a few MiB above the 100 MiB target without it)."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict

from backup.config import Destination, load
from backup.storage.s3 import S3Storage
from tests.conftest import REPO

URL = "s3://bucket/prefix"
ENV = {
    "PGHOST": "db",
    "PGDATABASE": "shop",
    "BACKUP_DESTINATIONS": URL,
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_REGION": "us-east-1",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9",
}


def _ordered_dicts(value: object) -> int:
    if isinstance(value, dict):
        own = 1 if isinstance(value, OrderedDict) else 0
        return own + sum(_ordered_dicts(v) for v in value.values())
    if isinstance(value, list):
        return sum(_ordered_dicts(v) for v in value)
    return 0


def test_the_s3_model_is_held_in_plain_dicts() -> None:
    storage = S3Storage.from_destination(Destination.parse(URL), load(ENV).storage)
    model = storage._api.client.meta.service_model
    description = model._service_description
    assert description["metadata"]["endpointPrefix"] == "s3"
    assert _ordered_dicts(description) == 0
    assert model.operation_model("UploadPart").input_shape.members  # still a working model


# RssAnon grown by building the client in a fresh interpreter (botocore already imported):
# 10 MiB measured with plain dicts, 14 MiB with OrderedDicts.
CLIENT_BOUND_MIB = 12
PROBE = f"""
import os
os.environ.update({ENV!r})
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
from backup.config import Destination, load
from backup.storage.s3 import S3Storage
config = load(dict(os.environ)).storage
before = anon()
storage = S3Storage.from_destination(Destination.parse({URL!r}), config)
print(anon() - before)
"""


def test_building_the_s3_client_stays_under_its_memory_bound() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    grown = float(out.stdout.strip())
    assert grown < CLIENT_BOUND_MIB, f"building the S3 client took {grown:.1f} MiB"
