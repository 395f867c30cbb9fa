"""Backblaze B2 through its native API (b2sdk.v2), as a ``Storage`` backend.

What B2 adds to the guarantees in ``base.py``:

- ``put`` streams through ``large_file.py``: a stream of at most one part is one
  ``b2_upload_file``; a longer one becomes a large file uploaded part by part, the parts growing
  so 10,000 of them hold 1 TB or more. On any failure ``put`` cancels the unfinished large file;
  a large file is invisible to ``list`` and ``open`` until it is finished.
- ``delete`` removes every version of a name (uploads and hide markers); deleting by name alone
  would only hide the file and keep paying for it.
- Retries: b2sdk already retries each request the way B2's integration checklist asks (a fresh
  upload URL per failed part, back-off on 503/429, re-authorisation when the token expires), so
  this module adds no second layer on top of it; only a download that breaks mid-body is resumed
  here, with a ranged request for the same file version.
- An application key restricted to one bucket (and a name prefix) works: the bucket comes from
  the key's own ``allowed`` record, so the key needs no ``listBuckets`` capability.

What each b2sdk error means to the user (the hint, the redaction) lives in ``errors.py``; the
part-by-part upload in ``large_file.py``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from b2sdk.v2 import SSE_B2_AES, B2Api, Bucket, InMemoryAccountInfo, InMemoryCache
from b2sdk.v2 import exception as b2exc

from backup.config import MIB, RetryConfig
from backup.errors import StorageError
from backup.storage.b2.errors import is_body_error, storage_error
from backup.storage.b2.large_file import B2_MAX_PARTS, PARTS_PER_STEP, LargeFileUploader
from backup.storage.b2.streams import CountingReader, ResponseReader, from_millis
from backup.storage.base import EmptyReader, ObjectInfo, Readable, age_s, check_key, join_key
from backup.storage.retry import ResumingReader

if TYPE_CHECKING:
    from backup.config import Destination, StorageConfig

logger = logging.getLogger(__name__)

REALM = "production"
# b2_list_file_names / b2_list_file_versions bill one class C transaction per 1,000 names
# returned, whatever maxFileCount asks for: https://www.backblaze.com/apidocs/b2-list-file-names
LIST_PAGE_SIZE = 1000
# b2_list_unfinished_large_files returns at most 100 files per call:
# https://www.backblaze.com/apidocs/b2-list-unfinished-large-files
UNFINISHED_PAGE_SIZE = 100


class B2Storage:
    """A ``b2://bucket/prefix`` destination.

    Memory: ``put`` holds at most ``parts_in_flight`` parts (one filling from the stream, the
    rest uploading; ``large_file.py``). Parts are ``part_size_bytes`` for the first
    ``parts_per_step`` parts and grow after that, so ``part_size_bytes x parts_in_flight`` for a
    stored object of up to ``parts_per_step x part_size_bytes`` (the default 8 MiB x 2 is 16 MiB
    up to 1.95 GiB), then one more ``part_size_bytes`` per part for every ``parts_per_step``
    parts (2 x 80 MiB at 100 GiB, 2 x 248 MiB at 1 TB). ``max_parts`` lower than B2's 10,000
    is for tests.
    """

    def __init__(
        self,
        api: B2Api,
        bucket_name: str,
        prefix: str = "",
        url: str | None = None,
        part_size_bytes: int = 8 * MIB,
        parts_in_flight: int = 2,
        sse_b2: bool = False,
        retry: RetryConfig | None = None,
        authorize: Callable[[], None] | None = None,
        secrets: tuple[str, ...] = (),
        parts_per_step: int = PARTS_PER_STEP,
        max_parts: int = B2_MAX_PARTS,
    ) -> None:
        """``api`` may already be authorised (tests); otherwise ``authorize`` is called once,
        on first use, so building the backend never touches the network."""
        self.api = api
        self.bucket_name = bucket_name
        self.prefix = prefix.strip("/")
        self.url = url or f"b2://{bucket_name}/{self.prefix}"
        self.part_size_bytes = part_size_bytes
        self.parts_in_flight = max(2, parts_in_flight)  # one part filling, one uploading
        self.parts_per_step = parts_per_step
        self.max_parts = max_parts
        self.encryption = SSE_B2_AES if sse_b2 else None  # None: the bucket's default applies
        self.retry = retry or RetryConfig()
        self._authorize = authorize
        self._secrets = secrets  # redacted from error text, should a server echo one
        self._bucket: Bucket | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_destination(cls, destination: Destination, config: StorageConfig) -> B2Storage:
        b2 = config.b2
        if not b2.key_id or not b2.application_key:
            raise StorageError(
                f"{destination.url}: no B2 credentials", hint="set B2_KEY_ID and B2_APPLICATION_KEY"
            )
        api = B2Api(InMemoryAccountInfo(), cache=InMemoryCache())
        key_id, application_key = b2.key_id, b2.application_key

        def authorize() -> None:
            api.authorize_account(REALM, key_id, application_key.reveal())

        storage = cls(
            api,
            destination.bucket,
            destination.prefix,
            url=destination.url,
            part_size_bytes=config.part_size_bytes,
            parts_in_flight=config.parts_in_flight,
            sse_b2=b2.sse_b2,
            retry=config.retry,
            authorize=authorize,
            secrets=(application_key.reveal(),),
        )
        return storage

    # -- the Storage protocol ----------------------------------------------------------------

    def put(self, key: str, stream: Readable) -> int:
        """Upload ``stream`` to ``key``; return the byte count.

        If ``stream.read`` raises, that same exception propagates unchanged, after the
        unfinished large file (if one was started) has been cancelled: nothing becomes visible.
        """
        name = self._name(key)
        bucket = self._get_bucket()
        source = CountingReader(stream)
        uploader = LargeFileUploader(
            self.api,
            bucket.id_,
            self.url,
            self.part_size_bytes,
            self.parts_in_flight,
            self.encryption,
            self.parts_per_step,
            self.max_parts,
        )
        try:
            version = uploader.upload(key, name, source)
        except BaseException as err:
            self._cancel_unfinished(bucket, name)
            if source.error is not None:
                # The dump's own failure, not a storage one: the caller gets it unchanged.
                if err is source.error:
                    raise
                raise source.error  # noqa: B904 - b2sdk wrapped it; unwrap
            if not isinstance(err, Exception):
                raise  # KeyboardInterrupt, SystemExit
            raise self._error(err, "upload", key) from err
        if version.size != source.count:
            # Remove only this upload: an earlier version of the key may be a good one.
            with contextlib.suppress(Exception):
                bucket.delete_file_version(version.id_, name)
            raise StorageError(
                f"{self.url}: upload of {key} stored {version.size} bytes, sent {source.count}",
                hint="the upload was incomplete and has been deleted; run the backup again",
            )
        return source.count

    def open(self, key: str) -> BinaryIO:
        """A readable stream of ``key``; a body that breaks mid-way resumes from its offset."""
        name = self._name(key)
        bucket = self._get_bucket()
        try:
            downloaded = bucket.download_file_by_name(name)
        except Exception as err:
            raise self._error(err, "download", key) from err
        file_id = downloaded.download_version.id_
        size = downloaded.download_version.size

        def open_at(offset: int) -> ResponseReader:
            again = bucket.download_file_by_id(file_id, range_=(offset, size - 1))
            return ResponseReader(again.response)

        reader = ResumingReader(
            ResponseReader(downloaded.response),
            open_at,
            size,
            self.retry,
            # b2sdk has retried every request already (B2Error); only a body that breaks while
            # being read (a transport error below b2sdk) is resumed here.
            is_permanent=lambda err: not is_body_error(err),
            translate=lambda err: self._error(err, "download", key),
            what=f"{self.url}: download of {key}",
        )
        return cast(BinaryIO, reader)

    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        """``length`` bytes of ``key`` from ``offset``: one ranged download, resumed like
        ``open`` (in the same file version)."""
        name = self._name(key)
        bucket = self._get_bucket()
        if length <= 0:
            self.open(key).close()  # a missing object is still ObjectNotFound
            return cast(BinaryIO, EmptyReader())
        end = offset + length - 1
        try:
            downloaded = bucket.download_file_by_name(name, range_=(offset, end))
        except Exception as err:
            raise self._error(err, "download", key) from err
        file_id = downloaded.download_version.id_

        def open_at(done: int) -> ResponseReader:
            again = bucket.download_file_by_id(file_id, range_=(offset + done, end))
            return ResponseReader(again.response)

        reader = ResumingReader(
            ResponseReader(downloaded.response),
            open_at,
            min(length, max(0, downloaded.download_version.size - offset)),
            self.retry,
            is_permanent=lambda err: not is_body_error(err),
            translate=lambda err: self._error(err, "download", key),
            what=f"{self.url}: download of {key} [{offset}+{length}]",
        )
        return cast(BinaryIO, reader)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every visible file whose relative key starts with ``prefix``, sorted by key."""
        bucket = self._get_bucket()
        full_prefix = join_key(self.prefix, prefix)
        objects: list[ObjectInfo] = []
        # Start at the prefix itself: B2 would skip ahead anyway, b2sdk's simulator does not.
        start: str | None = full_prefix or None
        try:
            while True:
                page = self.api.session.list_file_names(
                    bucket.id_, start, LIST_PAGE_SIZE, full_prefix or None
                )
                for item in page["files"]:
                    # list_file_names already skips hidden names; "folder" entries are not files.
                    if item["action"] != "upload":
                        continue
                    objects.append(
                        ObjectInfo(
                            key=self._relative(item["fileName"]),
                            size=int(item["contentLength"]),
                            modified=from_millis(item.get("uploadTimestamp")),
                            fingerprint=item.get("fileId"),
                        )
                    )
                start = page.get("nextFileName")
                if not start:
                    return objects
        except Exception as err:
            raise self._error(err, "list", prefix or "/") from err

    def delete(self, keys: Iterable[str]) -> None:
        """Delete every version of each key (uploads and hide markers); missing keys are fine."""
        bucket = self._get_bucket()
        for key in keys:
            name = self._name(key)
            try:
                for file_id, action in self._versions(bucket, name):
                    try:
                        if action == "start":
                            self.api.cancel_large_file(file_id)
                        else:
                            bucket.delete_file_version(file_id, name)
                    except b2exc.FileNotPresent:
                        continue  # deleted meanwhile: the goal is reached
            except Exception as err:
                raise self._error(err, "delete", key) from err

    def cleanup_incomplete(self, prefix: str = "", older_than_s: float = 0.0) -> int:
        """Cancel unfinished large files under ``prefix`` started ``older_than_s`` seconds ago
        or more; return how many. A younger one may be a live run's, so it is left alone."""
        bucket = self._get_bucket()
        # "backups/pg/" and not "backups/pg": another job's "backups/pg2" is not ours.
        full_prefix = join_key(self.prefix, prefix)
        if not prefix and full_prefix:
            full_prefix += "/"
        cancelled = 0
        now = datetime.now(UTC)
        start_id: str | None = None
        try:
            while True:
                page = self.api.session.list_unfinished_large_files(
                    bucket.id_, start_id, UNFINISHED_PAGE_SIZE, full_prefix or None
                )
                for item in page["files"]:
                    started = from_millis(item.get("uploadTimestamp"))
                    if age_s(started, now) < older_than_s:
                        continue
                    with contextlib.suppress(b2exc.FileNotPresent):
                        self.api.cancel_large_file(item["fileId"])
                        cancelled += 1
                        logger.info(
                            "%s: cancelled the unfinished upload of %s (started %s)",
                            self.url,
                            self._relative(item["fileName"]),
                            started.isoformat(timespec="seconds") if started else "?",
                            extra={"stage": "cleanup", "destination": self.url},
                        )
                start_id = page.get("nextFileId")
                if not start_id:
                    return cancelled
        except Exception as err:
            raise self._error(err, "cleanup of unfinished uploads under", prefix or "/") from err

    # -- helpers -----------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return join_key(self.prefix, check_key(self.url, key))

    def _relative(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def _get_bucket(self) -> Bucket:
        with self._lock:
            if self._bucket is None:
                try:
                    if self._authorize is not None:
                        self._authorize()
                        self._authorize = None
                    self._bucket = self._resolve_bucket()
                except StorageError:
                    raise
                except Exception as err:
                    raise self._error(err, "connect to", "bucket") from err
            return self._bucket

    def _resolve_bucket(self) -> Bucket:
        allowed: dict[str, Any] = self.api.account_info.get_allowed() or {}
        allowed_bucket = allowed.get("bucketName")
        if allowed_bucket and allowed_bucket != self.bucket_name:
            raise StorageError(
                f"{self.url}: the B2 application key only gives access to bucket "
                f"{allowed_bucket!r}",
                hint=f"use b2://{allowed_bucket}/... in BACKUP_DESTINATIONS (or B2_BUCKET_NAME), "
                "or a key for this bucket in B2_KEY_ID/B2_APPLICATION_KEY",
            )
        name_prefix = allowed.get("namePrefix")
        if name_prefix and not f"{self.prefix}/".startswith(name_prefix):
            raise StorageError(
                f"{self.url}: the B2 application key only gives access to names starting "
                f"with {name_prefix!r}",
                hint=f"use b2://{self.bucket_name}/{name_prefix.rstrip('/')} in "
                "BACKUP_DESTINATIONS, or a key without that restriction in B2_KEY_ID",
            )
        if allowed_bucket and allowed.get("bucketId"):
            # A restricted key often lacks listBuckets; its allowed record names the bucket.
            return self.api.BUCKET_CLASS(self.api, allowed["bucketId"], name=allowed_bucket)
        return self.api.get_bucket_by_name(self.bucket_name)

    def _versions(self, bucket: Bucket, name: str) -> list[tuple[str, str]]:
        """(file id, action) of every version of exactly ``name``, unfinished ones included."""
        versions: list[tuple[str, str]] = []
        start_name: str | None = name
        start_id: str | None = None
        while start_name == name:
            page = self.api.session.list_file_versions(
                bucket.id_, start_name, start_id, LIST_PAGE_SIZE, name
            )
            for item in page["files"]:
                if item["fileName"] != name:
                    return versions  # sorted by name: a longer name sharing the prefix
                versions.append((item["fileId"], item["action"]))
            start_name, start_id = page.get("nextFileName"), page.get("nextFileId")
        return versions

    def _cancel_unfinished(self, bucket: Bucket, name: str) -> None:
        """Cancel the large file(s) a failed ``put`` of ``name`` left; never raises."""
        try:
            for unfinished in bucket.list_unfinished_large_files(prefix=name):
                if unfinished.file_name == name:
                    self.api.cancel_large_file(unfinished.file_id)
                    logger.info("%s: cancelled unfinished upload of %s", self.url, name)
        except Exception as err:
            # The failed put is what the caller must hear about; cleanup_incomplete() or B2's
            # lifecycle rules remove what is left.
            logger.warning(
                "%s: could not cancel the unfinished upload of %s: %s",
                self.url,
                name,
                type(err).__name__,
            )

    def _error(self, err: Exception, action: str, key: str) -> StorageError:
        """Translate a b2sdk error into ``StorageError``/``ObjectNotFound`` with a hint."""
        return storage_error(
            err,
            url=self.url,
            bucket_name=self.bucket_name,
            action=action,
            key=key,
            secrets=self._secrets,
        )
