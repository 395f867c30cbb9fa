"""A ``gs://bucket/prefix`` destination: Google Cloud Storage through google-cloud-storage.

Credentials are what the configuration chose (``config/clouds.py``, ``GCSConfig.auth``): the
service-account key of ``GOOGLE_APPLICATION_CREDENTIALS`` (a file or its JSON), none for an
emulator (``STORAGE_EMULATOR_HOST``), or else Application Default Credentials
(``google.auth.default``: GKE Workload Identity through the metadata server, a VM's service
account, gcloud's login), looked up when the backend opens; none found is exit 2. The project is
never looked up for the client and the endpoint is always given, so ``API_ENDPOINT_OVERRIDE``
changes nothing. The library's own retries are off (``retry=None``): ``retry.py`` retries each
request.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import quote

import google.auth
from google.api_core import exceptions as gexc
from google.auth import exceptions as authexc
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage as gcs
from google.oauth2 import service_account

from backup.config import MIB, GCSConfig, RetryConfig
from backup.errors import ConfigError
from backup.storage.base import EmptyReader, ObjectInfo, Readable, check_key, join_key
from backup.storage.gcs.errors import is_permanent, storage_error
from backup.storage.gcs.resumable import CONTENT_TYPE, TIMEOUT_S, ResumableUploader, read_part
from backup.storage.retry import ResumingReader, delete_each, retrying

if TYPE_CHECKING:
    from backup.config import Destination, StorageConfig

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
# Read and write objects, nothing else (no bucket settings, no IAM):
# https://cloud.google.com/storage/docs/oauth-scopes
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
# objects.list returns at most 1,000 objects per page:
# https://cloud.google.com/storage/docs/json_api/v1/objects/list
LIST_PAGE_SIZE = 1000
# An external_account's subject token from AWS (google-auth's own constant, _default.py).
AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"  # noqa: S105 (a name)


class GCSStorage:
    """A ``gs://bucket/prefix`` destination.

    Memory: ``put`` holds one chunk of ``part_size_bytes`` (``resumable.py``); an
    object smaller than one part is sent in one request. ``cleanup_incomplete`` has nothing to
    find: see its docstring.
    """

    def __init__(
        self,
        client: gcs.Client,
        session: Any,
        bucket: str,
        prefix: str = "",
        url: str | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        part_size_bytes: int = 8 * MIB,
        retry: RetryConfig | None = None,
    ) -> None:
        self.client = client
        self.session = session
        self.bucket_name = bucket
        self.bucket = client.bucket(bucket)
        self.prefix = prefix.strip("/")
        self.url = url or f"gs://{bucket}/{self.prefix}"
        self.endpoint = endpoint.rstrip("/")
        self.part_size_bytes = part_size_bytes
        self.retry = retry or RetryConfig()
        self._uploader = ResumableUploader(session, self.url, bucket, self.retry)

    @classmethod
    def from_destination(cls, destination: Destination, config: StorageConfig) -> GCSStorage:
        """Reads the key file (no network: tokens are fetched on the first request)."""
        settings = config.gcs
        credentials = _credentials(settings)
        endpoint = settings.endpoint_url or DEFAULT_ENDPOINT
        session = AuthorizedSession(credentials)
        client = gcs.Client(
            project=None,
            credentials=credentials,
            _http=session,
            client_options={"api_endpoint": endpoint},
        )
        # The library fetches each bucket's metadata in a background thread for its tracing
        # (a GET outside retry.py, refused to a role without storage.buckets.get); only an
        # environment variable turns it off, so the cache is dropped here instead.
        client._bucket_metadata_cache = None
        return cls(
            client,
            session,
            destination.bucket,
            destination.prefix,
            url=destination.url,
            endpoint=endpoint,
            part_size_bytes=config.part_size_bytes,
            retry=config.retry,
        )

    # -- helpers --------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return join_key(self.prefix, check_key(self.url, key))

    def _relative(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def _call(self, action: str, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One request, retried unless permanent; failures become StorageError with a hint."""
        try:
            return retrying(self.retry, is_permanent, what=f"{action} {key}")(fn, *args, **kwargs)
        except Exception as err:
            raise storage_error(
                err, url=self.url, bucket=self.bucket_name, action=action, key=key
            ) from err

    # -- the Storage protocol ---------------------------------------------------------------

    def put(self, key: str, stream: Readable) -> int:
        """Upload ``stream`` to ``key``; return the byte count. Up to one part: one request.
        Longer: a resumable session, finished by its last chunk only; on any failure it is
        cancelled and the stream's own exception propagates unchanged."""
        name = self._name(key)
        # No chunk_size: below one part, the library sends the object in one request.
        blob = self.bucket.blob(name)
        first = read_part(stream, self.part_size_bytes)
        if len(first) < self.part_size_bytes:
            data = bytes(first)
            del first
            self._call("upload", key, self._upload_small, blob, data)
            return len(data)
        handed = [first]
        del first  # the uploader holds the only reference: memory stays one chunk
        return self._uploader.put(key, blob, handed, stream)

    @staticmethod
    def _upload_small(blob: Any, data: bytes) -> None:
        # A fresh file object per attempt: a retried request is sent from its start.
        blob.upload_from_file(
            io.BytesIO(data), size=len(data), content_type=CONTENT_TYPE, retry=None
        )

    def open(self, key: str) -> BinaryIO:
        """A readable stream of ``key``, pinned to the generation first found: a read that
        breaks resumes from its offset in that same generation, never in a newer object."""
        name = self._name(key)
        blob = self.bucket.blob(name)
        self._call("download", key, blob.reload, retry=None)
        media = (
            f"{self.endpoint}/download/storage/v1/b/{quote(self.bucket_name, safe='')}/o/"
            f"{quote(name, safe='')}?alt=media&generation={blob.generation}"
        )

        def open_at(offset: int) -> Any:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self.session.get(media, headers=headers, stream=True, timeout=TIMEOUT_S)
            if response.status_code not in (200, 206):
                response.close()
                raise gexc.from_http_response(response)
            return _Body(response)

        first = self._call("download", key, open_at, 0)
        reader = ResumingReader(
            first,
            open_at,
            blob.size,
            self.retry,
            is_permanent=is_permanent,
            translate=lambda err: storage_error(
                err, url=self.url, bucket=self.bucket_name, action="download", key=key
            ),
            what=f"{self.url}: download of {key}",
        )
        return cast(BinaryIO, reader)

    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        """``length`` bytes of ``key`` from ``offset``, pinned to the generation first found."""
        name = self._name(key)
        blob = self.bucket.blob(name)
        self._call("download", key, blob.reload, retry=None)
        size = min(length, max(0, int(blob.size or 0) - offset))
        if size <= 0:
            return cast(BinaryIO, EmptyReader())
        end = offset + size - 1
        media = (
            f"{self.endpoint}/download/storage/v1/b/{quote(self.bucket_name, safe='')}/o/"
            f"{quote(name, safe='')}?alt=media&generation={blob.generation}"
        )

        def open_at(done: int) -> Any:
            headers = {"Range": f"bytes={offset + done}-{end}"}
            response = self.session.get(media, headers=headers, stream=True, timeout=TIMEOUT_S)
            if response.status_code not in (200, 206):
                response.close()
                raise gexc.from_http_response(response)
            if response.status_code == 200:  # the whole object: skip to the range
                body = _Body(response)
                _skip(body, offset + done)
                return _Limited(body, end + 1 - offset - done)
            return _Body(response)

        first = self._call("download", key, open_at, 0)
        reader = ResumingReader(
            first,
            open_at,
            size,
            self.retry,
            is_permanent=is_permanent,
            translate=lambda err: storage_error(
                err, url=self.url, bucket=self.bucket_name, action="download", key=key
            ),
            what=f"{self.url}: download of {key} [{offset}+{length}]",
        )
        return cast(BinaryIO, reader)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose relative key starts with ``prefix``, page by page (each page one
        request, retried on its own); ``fingerprint`` is the object's generation."""
        full_prefix = join_key(self.prefix, prefix)
        objects: list[ObjectInfo] = []
        token: str | None = None
        while True:
            blobs, token = self._call("list", prefix or "/", self._page, full_prefix, token)
            for blob in blobs:
                modified: datetime | None = blob.updated or blob.time_created
                objects.append(
                    ObjectInfo(
                        key=self._relative(blob.name),
                        size=int(blob.size or 0),
                        modified=modified,
                        fingerprint=str(blob.generation) if blob.generation else None,
                    )
                )
            if not token:
                return sorted(objects, key=lambda o: o.key)

    def _page(self, full_prefix: str, token: str | None) -> tuple[list[Any], str | None]:
        iterator = self.client.list_blobs(
            self.bucket,
            prefix=full_prefix,
            page_size=LIST_PAGE_SIZE,
            page_token=token,
            retry=None,
        )
        page = next(iterator.pages, None)
        blobs = list(page) if page is not None else []
        return blobs, iterator.next_page_token

    def delete(self, keys: Iterable[str]) -> None:
        """Delete each key (one request each, retried on its own, ``retry.DELETES_IN_FLIGHT`` at
        once); a missing key is fine. On a bucket with object versioning, GCS keeps a
        noncurrent version: README says so."""
        names = {key: self._name(key) for key in keys}  # every key checked before any goes
        delete_each(names, lambda key: self._call("delete", key, self._delete_one, names[key]))

    def _delete_one(self, name: str) -> None:
        try:
            self.bucket.delete_blob(name, retry=None)
        except gexc.NotFound as err:
            if "bucket" in str(err.message).lower():
                raise
            return

    def cleanup_incomplete(self, prefix: str = "", older_than_s: float = 0.0) -> int:
        """Nothing to remove on GCS; returns 0.

        What a crashed ``put`` leaves on GCS is a resumable upload session: never an object,
        invisible to every listing, reachable only through its URL (which lived in the dead
        process), billed as nothing, and discarded by GCS a week after it was opened
        (https://cloud.google.com/storage/docs/resumable-uploads#session-uris). No API lists
        such sessions, so there is nothing this job could find or remove, young or old; a
        ``put`` that fails while the job runs cancels its own session.
        """
        return 0


def _credentials(settings: GCSConfig) -> Any:
    """The credentials ``settings.auth`` names; Application Default Credentials are looked
    up here (the metadata server answers on GKE and GCE), and none found is a ConfigError."""
    if settings.auth == "anonymous":
        return AnonymousCredentials()
    if settings.auth == "key_json" and settings.credentials_json:
        return _from_info(json.loads(settings.credentials_json.reveal()))
    if settings.auth == "key_file" and settings.credentials_file:
        with open(settings.credentials_file, encoding="utf-8") as file:
            return _from_info(json.load(file))
    try:
        credentials, _project = google.auth.default(scopes=[SCOPE])
    except authexc.DefaultCredentialsError as err:
        raise ConfigError(
            "gs:// destinations: no Google credentials were found (GOOGLE_APPLICATION_CREDENTIALS "
            "is unset and no metadata server answered)",
            hint="set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_APPLICATION_CREDENTIALS_FILE) to "
            "a service-account key, or run on GKE with Workload Identity (docs/gcs.md)",
        ) from err
    logger.debug("gs://: Application Default Credentials: %s", type(credentials).__name__)
    return credentials


def _from_info(info: dict[str, Any]) -> Any:
    """The credentials of a JSON the configuration checked: a service-account key, or an
    ``external_account`` configuration (workload identity federation), built as google-auth's
    own ``load_credentials_from_file`` would, without its project lookup (a token exchange
    and a Resource Manager request when the backend opens; the job never needs the project).
    No token is asked for yet."""
    if info.get("type") != "external_account":
        return service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    source = info.get("credential_source") or {}
    if info.get("subject_token_type") == AWS_SUBJECT_TOKEN_TYPE:
        module = "aws"
    elif isinstance(source, dict) and source.get("executable") is not None:
        module = "pluggable"  # needs GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1
    else:
        module = "identity_pool"  # a file (the projected service account token) or a URL
    try:
        kind = importlib.import_module(f"google.auth.{module}")
        return kind.Credentials.from_info(info, scopes=[SCOPE])
    except ValueError as err:
        raise ConfigError(
            f"GOOGLE_APPLICATION_CREDENTIALS: the external_account configuration was refused "
            f"by google-auth: {err}",
            hint="make it again with gcloud iam workload-identity-pools create-cred-config "
            "(docs/gcs.md)",
        ) from err


class _Body:
    """A streamed download response as a ``ClosableReader`` (bytes as stored: no decoding)."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def read(self, size: int = -1, /) -> bytes:
        amount = None if size is None or size < 0 else size
        data: bytes = self.response.raw.read(amount, decode_content=False)
        return data

    def close(self) -> None:
        self.response.close()


def _skip(body: Any, count: int) -> None:
    while count > 0:
        data = body.read(min(count, MIB))
        if not data:
            return
        count -= len(data)


class _Limited:
    def __init__(self, body: Any, left: int) -> None:
        self.body = body
        self.left = left

    def read(self, size: int = -1, /) -> bytes:
        if self.left <= 0:
            return b""
        data: bytes = self.body.read(
            self.left if size is None or size < 0 else min(size, self.left)
        )
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.body.close()
