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
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
import urllib3
from botocore import exceptions as botoexc
from botocore.config import Config as BotoConfig

from backup.config import MIB, RetryConfig
from backup.errors import ObjectNotFound, StorageError
from backup.storage.base import Destination, ObjectInfo, Readable, join_key
from backup.storage.retry import ResumingReader, retrying

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
READ_SIZE = 1 * MIB
CONTENT_TYPE = "application/octet-stream"

# Error codes worth another attempt; any other 4xx is the caller's to fix.
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "OperationAborted",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
    }
)
DEFAULT_HINT = (
    "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_ENDPOINT_URL, AWS_REGION and the bucket "
    "name in BACKUP_DESTINATIONS"
)


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


class S3Storage:
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
        first = _read_part(stream, self.part_size_bytes)
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
        return self._put_multipart(key, name, first, stream)

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
                    hint=_hint_for_code(errors[0].get("Code", ""), self.bucket),
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

    # -- multipart upload --------------------------------------------------------------------

    def _put_multipart(self, key: str, name: str, first: bytearray, stream: Readable) -> int:
        created = self._call(
            "upload",
            key,
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=name,
            ContentType=CONTENT_TYPE,
            **self._sse,
        )
        upload_id: str = created["UploadId"]
        state = _UploadState(self.parts_in_flight)
        executor = ThreadPoolExecutor(self.parts_in_flight, thread_name_prefix="s3-part")
        futures: list[Future[None]] = []
        size = 0
        try:
            data = first
            state.slots.acquire()  # the slot of the part already read
            part_number = 1
            while data:
                if part_number > S3_MAX_PARTS:
                    raise StorageError(
                        f"{self.url}: {key} needs more than {S3_MAX_PARTS} parts of "
                        f"{self.part_size_bytes // MIB} MiB",
                        hint="raise BACKUP_PART_SIZE_MB",
                    )
                futures.append(
                    executor.submit(
                        self._upload_part, key, name, upload_id, part_number, data, state
                    )
                )
                size += len(data)
                part_number += 1
                del data  # the worker holds the only reference now: memory stays bounded
                state.slots.acquire()  # wait for a free part buffer before reading the next
                state.raise_failure()
                data = _read_part(stream, self.part_size_bytes)
            state.slots.release()
            for future in futures:
                future.result()
            state.raise_failure()
            self._complete(key, name, upload_id, state.etags, size)
        except BaseException:
            state.stop.set()
            executor.shutdown(wait=True, cancel_futures=True)
            self._abort(name, upload_id)
            raise  # the stream's own exception unchanged, or a StorageError from a part
        finally:
            executor.shutdown(wait=True)
        return size

    def _upload_part(
        self, key: str, name: str, upload_id: str, number: int, data: bytearray, state: _UploadState
    ) -> None:
        try:
            if state.stop.is_set():
                return
            response = retrying(
                self.retry,
                is_permanent,
                what=f"upload of {key} part {number}",
                stop_event=state.stop,
            )(
                self.client.upload_part,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            state.etags[number] = response["ETag"]
        except Exception as err:
            state.fail(self._error(err, "upload", key))
        finally:
            state.slots.release()

    def _complete(
        self, key: str, name: str, upload_id: str, etags: dict[int, str], size: int
    ) -> None:
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        try:
            self._call(
                "upload",
                key,
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except StorageError as err:
            # A retried Complete whose first attempt succeeded unseen answers NoSuchUpload;
            # the object is there if its size matches.
            if _code(err.__cause__) != "NoSuchUpload" or self._size_of(name) != size:
                raise

    def _abort(self, name: str, upload_id: str) -> None:
        """Abort a multipart upload; never raises (the original failure matters more)."""
        try:
            retrying(self.retry, is_permanent, what="abort of an unfinished upload")(
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
            )
        except Exception as err:
            if _code(err) == "NoSuchUpload":
                return
            logger.warning(
                "%s: could not abort the unfinished upload of %s (%s); "
                "cleanup_incomplete() or a lifecycle rule removes it",
                self.url,
                name,
                _code(err) or type(err).__name__,
            )

    def _size_of(self, name: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=name)["ContentLength"])
        except Exception:
            return None

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
        if isinstance(err, StorageError):
            return err
        code = _code(err)
        if action == "download" and code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"{self.url}: no object {key}")
        if isinstance(err, botoexc.ClientError):
            detail = f"{code}: {err.response.get('Error', {}).get('Message') or code}"
            hint = _hint_for_code(code, self.bucket)
        elif isinstance(err, botoexc.NoCredentialsError):
            detail = "no credentials"
            hint = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        elif isinstance(
            err,
            botoexc.ConnectionError
            | botoexc.HTTPClientError
            | botoexc.IncompleteReadError
            | OSError,
        ):
            detail = f"{type(err).__name__}: {err}"
            hint = "the endpoint was unreachable after retries: check S3_ENDPOINT_URL and network"
        else:
            detail = f"{type(err).__name__}: {err}"
            hint = DEFAULT_HINT
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        return StorageError(f"{self.url}: {action} {key} failed: {detail}", hint=hint)


class _UploadState:
    """Shared between the reading thread and the part uploaders of one multipart upload."""

    def __init__(self, parts_in_flight: int) -> None:
        self.slots = threading.Semaphore(parts_in_flight)
        self.stop = threading.Event()
        self.etags: dict[int, str] = {}
        self._failure: StorageError | None = None
        self._lock = threading.Lock()

    def fail(self, err: StorageError) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = err
        self.stop.set()

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure


def _read_part(stream: Readable, size: int) -> bytearray:
    """Read until ``size`` bytes or the end of the stream; the stream's errors pass unchanged."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(READ_SIZE, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def _code(err: BaseException | None) -> str:
    if isinstance(err, botoexc.ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def is_permanent(err: BaseException) -> bool:
    """True for errors another attempt cannot fix (credentials, missing bucket, bad request)."""
    if isinstance(err, botoexc.ClientError):
        code = _code(err)
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return not (code in TRANSIENT_CODES or status >= 500 or status in (408, 429))
    if isinstance(
        err, botoexc.ConnectionError | botoexc.HTTPClientError | botoexc.IncompleteReadError
    ):
        return False
    if isinstance(err, botoexc.BotoCoreError):
        return True  # botoexc.NoCredentialsError, ParamValidationError, ...
    return not isinstance(err, OSError | urllib3.exceptions.HTTPError)


def _hint_for_code(code: str, bucket: str) -> str:
    if code == "InvalidAccessKeyId":
        return "the store does not know this key: check AWS_ACCESS_KEY_ID and S3_ENDPOINT_URL"
    if code == "SignatureDoesNotMatch":
        return "check AWS_SECRET_ACCESS_KEY: it does not match AWS_ACCESS_KEY_ID"
    if code in ("InvalidToken", "ExpiredToken", "TokenRefreshRequired"):
        return "check AWS_SESSION_TOKEN (temporary credentials expire)"
    if code in ("NoSuchBucket", "InvalidBucketName"):
        return (
            f"bucket {bucket!r} does not exist at this endpoint: check the bucket name in "
            "BACKUP_DESTINATIONS, S3_ENDPOINT_URL and AWS_REGION"
        )
    if code in ("AccessDenied", "AllAccessDisabled", "AccountProblem"):
        return (
            f"the key in AWS_ACCESS_KEY_ID may not do this on bucket {bucket!r}: it needs "
            "s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject, s3:AbortMultipartUpload "
            "and s3:ListBucketMultipartUploads"
        )
    if code in ("AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraint"):
        return f"bucket {bucket!r} is in another region: check AWS_REGION and S3_ENDPOINT_URL"
    return DEFAULT_HINT
