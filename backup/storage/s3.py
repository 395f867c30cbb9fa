"""Any S3-compatible store (AWS S3, MinIO, Cloudflare R2, Wasabi, B2's S3 API) via boto3.

What S3 adds to the guarantees in ``base.py``:

- ``put`` is a multipart upload fed part by part from the stream; it becomes an object only at
  ``CompleteMultipartUpload``, after the stream's last read. Any failure (the stream raising,
  a part failing after retries, an interrupt) aborts the upload, so nothing is left visible.
  A stream shorter than one part is a single ``PutObject``.
- Retries are ours (``retry.py``), per request and per part; botocore's own are set to one
  attempt so the two never multiply. Bad credentials, a missing bucket or a denied action fail
  at once, with a hint naming the variable to check.
- The client asks for checksums only where the API requires them
  (``request_checksum_calculation="when_required"``): B2's S3 API and other stores reject the
  headers botocore sends by default since 1.36. ``DeleteObjects`` also gets ``Content-MD5``,
  which several of those stores still require.
- ``delete`` removes the current version; on a bucket with versioning enabled, older versions
  stay until the bucket's lifecycle rules remove them.

This module owns the client settings and the ``Storage`` methods; the part-by-part upload lives
in ``s3_multipart.py`` and what each S3 error means (retry or not, which hint) in ``s3_errors.py``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from botocore.config import Config as BotoConfig

from backup.config import MIB, RetryConfig
from backup.errors import StorageError
from backup.storage.base import Destination, ObjectInfo, Readable, join_key
from backup.storage.retry import ResumingReader, retrying
from backup.storage.s3_errors import hint_for_code, is_permanent, storage_error
from backup.storage.s3_multipart import CONTENT_TYPE, MultipartUploads, read_part

if TYPE_CHECKING:
    from backup.config import StorageConfig

logger = logging.getLogger(__name__)

# At most 10,000 parts per upload (and every part but the last at least 5 MiB, which
# config.MIN_PART_SIZE_MB enforces): https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
S3_MAX_PARTS = 10_000
# DeleteObjects takes at most 1,000 keys per request:
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html
DELETE_BATCH_SIZE = 1000
# ListObjectsV2 returns at most 1,000 keys per page:
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
LIST_PAGE_SIZE = 1000


def client_config(parts_in_flight: int = 2, path_style: bool = False) -> BotoConfig:
    """The botocore settings every S3 client of this job uses (also used by the tests)."""
    return BotoConfig(
        # B2's S3 API, older MinIO and others reject the CRC headers botocore adds by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # One attempt in all: retry.py retries each request and part, with the user's settings.
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=120,
        # Every part in flight holds a connection, plus one for list/complete/abort.
        max_pool_connections=max(2, parts_in_flight + 1),
        # Self-hosted stores (MinIO, SeaweedFS) rarely have wildcard DNS for virtual hosts.
        s3={"addressing_style": "path" if path_style else "auto"},
    )


def add_content_md5(request: Any, **_: Any) -> None:
    """botocore ``before-sign`` hook: give ``DeleteObjects`` the ``Content-MD5`` it needs.

    AWS documents the header as required; botocore >= 1.36 sends a CRC32 checksum instead, and
    stores that still follow the documented rule refuse the request (``MissingContentMD5``).
    """
    body = request.body
    if isinstance(body, bytes | bytearray) and "Content-MD5" not in request.headers:
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        request.headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


class S3Storage(MultipartUploads):
    """An ``s3://bucket/prefix`` destination.

    Memory: ``put`` holds at most ``parts_in_flight`` parts of ``part_size_bytes`` (the one
    being read from the stream counts as one), so ``part_size_bytes x parts_in_flight`` bytes
    whatever the size of the stream; the default 16 MiB x 2 is 32 MiB.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        url: str | None = None,
        part_size_bytes: int = 16 * MIB,
        parts_in_flight: int = 2,
        retry: RetryConfig | None = None,
        sse: str | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = url or f"s3://{bucket}/{self.prefix}"
        self.part_size_bytes = part_size_bytes
        self.parts_in_flight = max(1, parts_in_flight)
        self.retry = retry or RetryConfig()
        self._sse: dict[str, str] = {"ServerSideEncryption": sse} if sse else {}
        self._secrets: tuple[str, ...] = ()  # redacted from error text, should a server echo one
        client.meta.events.register("before-sign.s3.DeleteObjects", add_content_md5)

    @classmethod
    def from_destination(cls, destination: Destination, config: StorageConfig) -> S3Storage:
        s3 = config.s3
        secret = s3.secret_access_key.reveal() if s3.secret_access_key else None
        token = s3.session_token.reveal() if s3.session_token else None
        # Without keys boto3 falls back to its own chain (instance role, web identity, ...).
        session = boto3.session.Session(
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
            region_name=s3.region,
        )
        client = session.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            config=client_config(config.parts_in_flight, path_style=bool(s3.endpoint_url)),
        )
        storage = cls(
            client,
            destination.bucket,
            destination.prefix,
            url=destination.url,
            part_size_bytes=config.part_size_bytes,
            parts_in_flight=config.parts_in_flight,
            retry=config.retry,
            sse=s3.sse,
        )
        storage._secrets = tuple(s for s in (secret, token) if s)
        return storage

    # -- the Storage protocol ----------------------------------------------------------------

    def put(self, key: str, stream: Readable) -> int:
        """Upload ``stream`` to ``key``; return the byte count.

        If ``stream.read`` raises, that same exception propagates unchanged after the
        multipart upload has been aborted: nothing becomes visible.
        """
        name = self._name(key)
        first = read_part(stream, self.part_size_bytes)
        if len(first) < self.part_size_bytes:
            self._call(
                "upload",
                key,
                self.client.put_object,
                Bucket=self.bucket,
                Key=name,
                Body=first,
                ContentType=CONTENT_TYPE,
                **self._sse,
            )
            return len(first)
        return self._put_multipart(key, name, first, stream, S3_MAX_PARTS)

    def open(self, key: str) -> BinaryIO:
        """A readable stream of ``key``; a body that breaks mid-way resumes from its offset."""
        name = self._name(key)
        response = self._call("download", key, self.client.get_object, Bucket=self.bucket, Key=name)
        etag = response.get("ETag")

        def open_at(offset: int) -> Any:
            # If-Match: resume only the very object we started; a replaced one fails instead.
            extra = {"IfMatch": etag} if etag else {}
            ranged = self.client.get_object(
                Bucket=self.bucket, Key=name, Range=f"bytes={offset}-", **extra
            )
            return ranged["Body"]

        reader = ResumingReader(
            response["Body"],
            open_at,
            response.get("ContentLength"),
            self.retry,
            is_permanent=is_permanent,
            translate=lambda err: self._error(err, "download", key),
            what=f"{self.url}: download of {key}",
        )
        return cast(BinaryIO, reader)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose relative key starts with ``prefix``, paging past 1,000."""
        full_prefix = join_key(self.prefix, prefix)
        objects: list[ObjectInfo] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call(
                "list",
                prefix or "/",
                self.client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=full_prefix,
                MaxKeys=LIST_PAGE_SIZE,
                **extra,
            )
            for item in page.get("Contents", []):
                objects.append(
                    ObjectInfo(
                        key=self._relative(item["Key"]),
                        size=int(item["Size"]),
                        modified=item.get("LastModified"),
                    )
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sorted(objects, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` in batches of 1,000, checking each key's result; missing is fine."""
        names = [self._name(key) for key in keys]
        for start in range(0, len(names), DELETE_BATCH_SIZE):
            batch = names[start : start + DELETE_BATCH_SIZE]
            response = self._call(
                "delete",
                self._relative(batch[0]),
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": name} for name in batch], "Quiet": True},
            )
            errors = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                shown = ", ".join(
                    f"{self._relative(e.get('Key', '?'))} ({e.get('Code')})" for e in errors[:5]
                )
                more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
                raise StorageError(
                    f"{self.url}: could not delete {shown}{more}",
                    hint=hint_for_code(errors[0].get("Code", ""), self.bucket),
                )

    def cleanup_incomplete(self, prefix: str = "") -> int:
        """Abort multipart uploads under ``prefix`` left by a crashed run; return how many.

        Call it only when no upload to this destination is running: it cannot tell a crashed
        run's upload from a live one. (A bucket lifecycle rule "abort incomplete multipart
        uploads after N days" does the same on the server side.)
        """
        full_prefix = join_key(self.prefix, prefix)
        aborted = 0
        markers: dict[str, str] = {}
        while True:
            page = self._call(
                "list uploads",
                prefix or "/",
                self.client.list_multipart_uploads,
                Bucket=self.bucket,
                Prefix=full_prefix,
                **markers,
            )
            for upload in page.get("Uploads", []):
                self._abort(upload["Key"], upload["UploadId"])
                aborted += 1
            next_key = page.get("NextKeyMarker")
            if not page.get("IsTruncated") or not next_key:
                return aborted  # (a store that omits the markers would otherwise loop forever)
            markers = {"KeyMarker": next_key, "UploadIdMarker": page.get("NextUploadIdMarker", "")}

    # -- helpers -----------------------------------------------------------------------------

    def _call(self, action: str, key: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """One request, retried unless permanent; failures become StorageError with a hint."""
        try:
            return retrying(self.retry, is_permanent, what=f"{action} {key}")(fn, **kwargs)
        except Exception as err:
            raise self._error(err, action, key) from err

    def _name(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{self.url}: invalid object key {key!r}")
        return join_key(self.prefix, key)

    def _relative(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def _error(self, err: BaseException, action: str, key: str) -> StorageError:
        return storage_error(
            err, url=self.url, bucket=self.bucket, action=action, key=key, secrets=self._secrets
        )
