"""Any S3-compatible store (AWS S3, MinIO, Cloudflare R2, Wasabi, B2's S3 API) via botocore.

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

This module owns the ``Storage`` methods; the client settings and single requests live in
``client.py``, the part-by-part upload in ``multipart.py`` and what each S3 error means (retry or
not, which hint) in ``errors.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from backup.config import MIB, RetryConfig
from backup.errors import StorageError
from backup.storage.base import EmptyReader, ObjectInfo, Readable, age_s, join_key
from backup.storage.retry import ResumingReader
from backup.storage.s3 import client as s3_client
from backup.storage.s3.client import BucketClient, client_config
from backup.storage.s3.errors import hint_for_code, is_permanent
from backup.storage.s3.multipart import (
    CONTENT_TYPE,
    PARTS_PER_STEP,
    MultipartUploader,
    read_part,
)

if TYPE_CHECKING:
    from backup.config import Destination, StorageConfig

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


class S3Storage:
    """An ``s3://bucket/prefix`` destination.

    Memory: ``put`` holds at most ``parts_in_flight`` parts (the one being read from the
    stream counts as one). Parts are ``part_size_bytes`` for the first ``parts_per_step`` parts
    and grow after that (``multipart.py``), so ``part_size_bytes x parts_in_flight`` for a
    stored object of up to ``parts_per_step x part_size_bytes`` (the default 8 MiB x 2 is
    16 MiB up to 7.8 GiB), then one more ``part_size_bytes`` per part for every
    ``parts_per_step`` parts.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        url: str | None = None,
        part_size_bytes: int = 8 * MIB,
        parts_in_flight: int = 2,
        retry: RetryConfig | None = None,
        sse: str | None = None,
        secrets: tuple[str, ...] = (),
        parts_per_step: int = PARTS_PER_STEP,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = url or f"s3://{bucket}/{self.prefix}"
        self.part_size_bytes = part_size_bytes
        self._sse: dict[str, str] = {"ServerSideEncryption": sse} if sse else {}
        self._api = BucketClient(
            client, bucket, self.prefix, self.url, retry or RetryConfig(), secrets
        )
        self._multipart = MultipartUploader(
            self._api, part_size_bytes, parts_in_flight, self._sse, parts_per_step
        )

    @classmethod
    def from_destination(cls, destination: Destination, config: StorageConfig) -> S3Storage:
        s3 = config.s3
        secret = s3.secret_access_key.reveal() if s3.secret_access_key else None
        token = s3.session_token.reveal() if s3.session_token else None
        # Without keys botocore falls back to its own chain (instance role, web identity, ...).
        client = s3_client.session().create_client(
            "s3",
            region_name=s3.region,
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
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
            secrets=tuple(s for s in (secret, token) if s),
        )
        return storage

    # -- the Storage protocol ----------------------------------------------------------------

    def put(self, key: str, stream: Readable) -> int:
        """Upload ``stream`` to ``key``; return the byte count.

        If ``stream.read`` raises, that same exception propagates unchanged after the
        multipart upload has been aborted: nothing becomes visible.
        """
        name = self._api.name(key)
        first = read_part(stream, self.part_size_bytes)
        if len(first) < self.part_size_bytes:
            self._api.call(
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
        handed = [first]
        del first  # the uploader holds the only reference: memory stays parts_in_flight parts
        return self._multipart.put(key, name, handed, stream, S3_MAX_PARTS)

    def open(self, key: str) -> BinaryIO:
        """A readable stream of ``key``; a body that breaks mid-way resumes from its offset."""
        name = self._api.name(key)
        response = self._api.call(
            "download", key, self.client.get_object, Bucket=self.bucket, Key=name
        )
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
            self._api.retry,
            is_permanent=is_permanent,
            translate=lambda err: self._api.error(err, "download", key),
            what=f"{self.url}: download of {key}",
        )
        return cast(BinaryIO, reader)

    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        """``length`` bytes of ``key`` from ``offset``: one ranged GET, resumed like ``open``."""
        if length <= 0:
            self.open(key).close()  # a missing object is still ObjectNotFound
            return cast(BinaryIO, EmptyReader())
        name = self._api.name(key)
        end = offset + length - 1

        def open_at(done: int) -> Any:
            extra = {"IfMatch": etag[0]} if etag else {}
            response = self.client.get_object(
                Bucket=self.bucket, Key=name, Range=f"bytes={offset + done}-{end}", **extra
            )
            if not etag and response.get("ETag"):
                etag.append(response["ETag"])
            return response["Body"]

        etag: list[str] = []
        first = self._api.call("download", key, open_at, done=0)
        reader = ResumingReader(
            first,
            open_at,
            length,
            self._api.retry,
            is_permanent=is_permanent,
            translate=lambda err: self._api.error(err, "download", key),
            what=f"{self.url}: download of {key} [{offset}+{length}]",
        )
        return cast(BinaryIO, reader)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose relative key starts with ``prefix``, paging past 1,000."""
        full_prefix = join_key(self.prefix, prefix)
        objects: list[ObjectInfo] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._api.call(
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
                        key=self._api.relative(item["Key"]),
                        size=int(item["Size"]),
                        modified=item.get("LastModified"),
                        fingerprint=item.get("ETag"),
                    )
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sorted(objects, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` in batches of 1,000, checking each key's result; missing is fine."""
        names = [self._api.name(key) for key in keys]
        for start in range(0, len(names), DELETE_BATCH_SIZE):
            batch = names[start : start + DELETE_BATCH_SIZE]
            response = self._api.call(
                "delete",
                self._api.relative(batch[0]),
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": name} for name in batch], "Quiet": True},
            )
            errors = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                shown = ", ".join(
                    f"{self._api.relative(e.get('Key', '?'))} ({e.get('Code')})" for e in errors[:5]
                )
                more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
                raise StorageError(
                    f"{self.url}: could not delete {shown}{more}",
                    hint=hint_for_code(errors[0].get("Code", ""), self.bucket),
                )

    def cleanup_incomplete(self, prefix: str = "", older_than_s: float = 0.0) -> int:
        """Abort multipart uploads under ``prefix`` initiated ``older_than_s`` seconds ago or
        more; return how many.

        A younger upload may be a live run's (another copy of the job), so it is left alone.
        (A bucket lifecycle rule "abort incomplete multipart uploads after N days" does the
        same on the server side.)
        """
        # "backups/pg/" and not "backups/pg": another job's "backups/pg2" is not ours.
        full_prefix = join_key(self.prefix, prefix or "")
        if not prefix and full_prefix:
            full_prefix += "/"
        return self._abort_uploads(full_prefix, prefix or "/", older_than_s, lambda _: True)

    def cleanup_incomplete_in(self, folders: list[str], older_than_s: float = 0.0) -> int:
        """``cleanup_incomplete`` of each of ``folders`` (relative, ending in ``/``) with one
        listing of the destination's uploads instead of one per folder (hundreds with
        ``BACKUP_DATABASES=all``); an upload outside them (another job's) is left alone."""
        wanted = tuple(folders)
        full_prefix = f"{self.prefix}/" if self.prefix else ""
        return self._abort_uploads(
            full_prefix,
            "/",
            older_than_s,
            lambda name: self._api.relative(name).startswith(wanted),
        )

    def _abort_uploads(
        self, full_prefix: str, what: str, older_than_s: float, ours: Callable[[str], bool]
    ) -> int:
        """Abort the uploads under ``full_prefix`` whose object name ``ours`` accepts, started
        ``older_than_s`` seconds ago or more (every page of the listing); how many."""
        aborted = 0
        markers: dict[str, str] = {}
        now = datetime.now(UTC)
        while True:
            page = self._api.call(
                "list uploads",
                what,
                self.client.list_multipart_uploads,
                Bucket=self.bucket,
                Prefix=full_prefix,
                **markers,
            )
            for upload in page.get("Uploads", []):
                initiated = upload.get("Initiated")
                if not ours(upload["Key"]) or age_s(initiated, now) < older_than_s:
                    continue
                self._multipart.abort(upload["Key"], upload["UploadId"])
                aborted += 1
                logger.info(
                    "%s: aborted the unfinished upload of %s (started %s)",
                    self.url,
                    self._api.relative(upload["Key"]),
                    initiated.isoformat(timespec="seconds") if initiated else "at an unknown time",
                    extra={"stage": "cleanup", "destination": self.url},
                )
            next_key = page.get("NextKeyMarker")
            if not page.get("IsTruncated") or not next_key:
                return aborted  # (a store that omits the markers would otherwise loop forever)
            markers = {"KeyMarker": next_key, "UploadIdMarker": page.get("NextUploadIdMarker", "")}
