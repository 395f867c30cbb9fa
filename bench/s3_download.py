"""Download one S3 object to nowhere: the time of the transfer alone, for the benchmark.

    s3_download.py ENDPOINT_URL BUCKET KEY   (credentials in AWS_* variables)

Plain boto3 ``get_object`` read in 1 MiB chunks, with the job's client configuration
(``backup.storage.s3.client_config``): no checksum, no decryption, no decompression.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from backup.storage.s3 import client_config

CHUNK_BYTES = 1024 * 1024


def main() -> None:
    endpoint, bucket, key = sys.argv[1:4]
    client = boto3.session.Session(region_name=os.environ.get("AWS_REGION")).client(
        "s3", endpoint_url=endpoint, config=client_config(path_style=True)
    )
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    total = 0
    while chunk := body.read(CHUNK_BYTES):
        total += len(chunk)
    print(total)


if __name__ == "__main__":
    main()
