"""An ``azure://container/prefix`` (or ``az://``) destination: Azure Blob Storage through
azure-storage-blob.

Credentials are what the configuration names (``config/clouds.py``): a connection string, or
an account with its key or a SAS token, or an account alone: azure-identity's
``DefaultAzureCredential`` (AKS workload identity from ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``
and ``AZURE_FEDERATED_TOKEN_FILE``, which the webhook injects; a managed identity; the Azure
CLI's login), imported only then. The SDK's own retries are off
(``retry_total=0``): ``retry.py`` retries each request; its per-request log lines (INFO) are
kept out of the job's log below DEBUG (``backup.log``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from backup.config import MIB, RetryConfig
from backup.storage.azure.blocks import MAX_BLOCK_BYTES, BlockUploader, read_part
from backup.storage.azure.errors import error_code, is_permanent, storage_error
from backup.storage.base import ObjectInfo, Readable, age_s, check_key, join_key
from backup.storage.retry import ResumingReader, delete_each, retrying

if TYPE_CHECKING:
    from backup.config import Destination, StorageConfig

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/octet-stream"
# List Blobs returns at most 5,000 per page; 1,000 keeps a page's memory small:
# https://learn.microsoft.com/rest/api/storageservices/list-blobs
LIST_PAGE_SIZE = 1000
# Downloads are read in ranges of this size, one at a time.
DOWNLOAD_CHUNK_BYTES = 4 * MIB


class AzureStorage:
    """An ``azure://container/prefix`` destination.

    Memory: ``put`` holds one block of ``part_size_bytes`` (``blocks.py``); an object smaller
    than one part is one ``Put Blob``. A download holds one range of ``DOWNLOAD_CHUNK_BYTES``.
    """

    def __init__(
        self,
        container: ContainerClient,
        url: str,
        prefix: str = "",
        part_size_bytes: int = 8 * MIB,
        retry: RetryConfig | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.container = container
        self.container_name = container.container_name
        self.prefix = prefix.strip("/")
        self.url = url
        self.part_size_bytes = min(part_size_bytes, MAX_BLOCK_BYTES)
        self.retry = retry or RetryConfig()
        self._secrets = secrets
        self._blocks = BlockUploader(self._error, self.retry)

    @classmethod
    def from_destination(cls, destination: Destination, config: StorageConfig) -> AzureStorage:
        """Builds the client from the configuration (no request is sent)."""
        az = config.azure
        options: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": 10,
            "read_timeout": 120,
            "max_single_get_size": DOWNLOAD_CHUNK_BYTES,
            "max_chunk_get_size": DOWNLOAD_CHUNK_BYTES,
            # Below one part, one Put Blob (up to 5000 MiB), never the SDK's own blocks.
            "max_single_put_size": min(config.part_size_bytes, MAX_BLOCK_BYTES),
        }
        secrets: list[str] = []
        if az.connection_string:
            service = BlobServiceClient.from_connection_string(
                az.connection_string.reveal(), **options
            )
            secrets.append(az.connection_string.reveal())
        else:
            account = az.account_name or ""
            endpoint = az.endpoint_url or f"https://{account}.blob.core.windows.net"
            credential: Any
            if az.account_key:
                credential = AzureNamedKeyCredential(account, az.account_key.reveal())
                secrets.append(az.account_key.reveal())
            elif az.uses_identity:
                credential = _identity()
            else:
                sas = az.sas_token.reveal().lstrip("?") if az.sas_token else ""
                credential = AzureSasCredential(sas)
                secrets.append(sas)
            service = BlobServiceClient(endpoint, credential=credential, **options)
        container = service.get_container_client(destination.bucket)
        return cls(
            container,
            destination.url,
            destination.prefix,
            part_size_bytes=config.part_size_bytes,
            retry=config.retry,
            secrets=tuple(secrets),
        )

    # -- helpers --------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return join_key(self.prefix, check_key(self.url, key))

    def _relative(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def _error(self, err: BaseException, action: str, key: str) -> Any:
        return storage_error(
            err,
            url=self.url,
            container=self.container_name,
            action=action,
            key=key,
            secrets=self._secrets,
        )

    def _call(self, action: str, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One request, retried unless permanent; failures become StorageError with a hint."""
        try:
            return retrying(self.retry, is_permanent, what=f"{action} {key}")(fn, *args, **kwargs)
        except Exception as err:
            raise self._error(err, action, key) from err

    # -- the Storage protocol ---------------------------------------------------------------

    def put(self, key: str, stream: Readable) -> int:
        """Upload ``stream`` to ``key``; return the byte count. Up to one part: one ``Put
        Blob``. Longer: staged blocks committed at the end; on any failure the staged blocks
        are discarded (``_discard``) and the stream's own exception propagates unchanged."""
        name = self._name(key)
        blob = self.container.get_blob_client(name)
        first = read_part(stream, self.part_size_bytes)
        if len(first) < self.part_size_bytes:
            data = bytes(first)
            del first
            self._call("upload", key, self._upload_small, blob, data)
            return len(data)
        handed = [first]
        del first  # the uploader holds the only reference: memory stays one block
        try:
            return self._blocks.put(key, blob, handed, stream)
        except BaseException:
            self._discard(key, blob)
            raise

    @staticmethod
    def _upload_small(blob: Any, data: bytes) -> None:
        blob.upload_blob(
            data,
            overwrite=True,
            length=len(data),
            max_concurrency=1,
            content_settings=ContentSettings(content_type=CONTENT_TYPE),
        )

    def _discard(self, key: str, blob: Any) -> None:
        """Remove the blocks a failed ``put`` staged, when no blob is committed under the name
        (Delete Blob on a name with only uncommitted blocks drops them). With a committed blob
        there, deleting would destroy it: its stray blocks are left for Azure to drop a week
        later. A failure here is logged only: the blocks are invisible either way, and
        ``cleanup_incomplete`` finds them later."""
        try:
            blob.get_blob_properties()
            return  # an older blob exists: keep it
        except ResourceNotFoundError:
            pass
        except Exception as err:
            logger.warning("%s: staged blocks of %s left: %s", self.url, key, type(err).__name__)
            return
        try:
            blob.delete_blob()
        except ResourceNotFoundError:
            return
        except Exception as err:
            logger.warning("%s: staged blocks of %s left: %s", self.url, key, type(err).__name__)

    def open(self, key: str) -> BinaryIO:
        """A readable stream of ``key``, pinned to the ETag first found: a read that breaks
        resumes from its offset in that same blob, never in a newer one."""
        name = self._name(key)
        blob = self.container.get_blob_client(name)
        first = self._call("download", key, blob.download_blob, max_concurrency=1)
        etag = first.properties.etag
        size = int(first.properties.size)

        def open_at(offset: int) -> Any:
            return blob.download_blob(
                offset=offset,
                max_concurrency=1,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )

        reader = ResumingReader(
            _Download(first),
            lambda offset: _Download(open_at(offset)) if offset < size else _Empty(),
            size,
            self.retry,
            is_permanent=is_permanent,
            translate=lambda err: self._error(err, "download", key),
            what=f"{self.url}: download of {key}",
        )
        return cast(BinaryIO, reader)

    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        """``length`` bytes of ``key`` from ``offset``, pinned to the ETag first found."""
        name = self._name(key)
        blob = self.container.get_blob_client(name)
        props = self._call("download", key, blob.get_blob_properties)
        etag = props.etag
        size = min(length, max(0, int(props.size) - offset))

        def open_at(done: int) -> Any:
            if done >= size:
                return _Empty()
            return _Download(
                blob.download_blob(
                    offset=offset + done,
                    length=size - done,
                    max_concurrency=1,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            )

        first = self._call("download", key, open_at, 0)
        reader = ResumingReader(
            first,
            open_at,
            size,
            self.retry,
            is_permanent=is_permanent,
            translate=lambda err: self._error(err, "download", key),
            what=f"{self.url}: download of {key} [{offset}+{length}]",
        )
        return cast(BinaryIO, reader)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every blob whose relative key starts with ``prefix``, page by page (each page one
        request, retried on its own); ``fingerprint`` is the blob's ETag."""
        return sorted(
            (
                ObjectInfo(
                    key=self._relative(item.name),
                    size=int(item.size or 0),
                    modified=item.last_modified,
                    fingerprint=str(item.etag) if item.etag else None,
                )
                for item in self._listing(prefix)
            ),
            key=lambda o: o.key,
        )

    def _listing(self, prefix: str, include: list[str] | None = None) -> list[Any]:
        full_prefix = join_key(self.prefix, prefix)
        items: list[Any] = []
        token: str | None = None
        while True:
            page, token = self._call(
                "list", prefix or "/", self._page, full_prefix, token, include or []
            )
            items.extend(page)
            if not token:
                return items

    def _page(
        self, full_prefix: str, token: str | None, include: list[str]
    ) -> tuple[list[Any], str | None]:
        pages = self.container.list_blobs(
            name_starts_with=full_prefix or None,
            include=include or None,
            results_per_page=LIST_PAGE_SIZE,
        ).by_page(continuation_token=token)
        page = list(next(pages, []))
        return page, pages.continuation_token

    def delete(self, keys: Iterable[str]) -> None:
        """Delete each key with its snapshots (one request each, retried on its own,
        ``retry.DELETES_IN_FLIGHT`` at once); a missing key is fine. With blob versioning or soft
        delete on the account, Azure keeps what those settings keep: README says so."""
        names = {key: self._name(key) for key in keys}  # every key checked before any goes
        delete_each(names, lambda key: self._call("delete", key, self._delete_one, names[key]))

    def _delete_one(self, name: str) -> None:
        try:
            self.container.delete_blob(name, delete_snapshots="include")
        except ResourceNotFoundError as err:
            if error_code(err) == "ContainerNotFound":
                raise

    def cleanup_incomplete(self, prefix: str = "", older_than_s: float = 0.0) -> int:
        """Remove the staged blocks a crashed ``put`` left under ``prefix``, last staged at
        least ``older_than_s`` seconds ago; return how many names were cleaned.

        What a crash leaves on Azure: uncommitted blocks, attached to the blob's name, never
        readable, listed only with ``include=uncommittedblobs``, billed as stored, and dropped
        by Azure a week after the last one was staged. A name with only uncommitted blocks is
        removed here (Delete Blob). Uncommitted blocks next to a committed blob (a crashed
        overwrite) cannot be removed without deleting or rewriting that blob, so they are left
        for Azure's own expiry. A younger upload may be a live run's: it is left alone.
        """
        committed = {item.name for item in self._listing(prefix)}
        removed = 0
        now = datetime.now(UTC)
        for item in self._listing(prefix, include=["uncommittedblobs"]):
            if item.name in committed:
                continue
            if age_s(item.last_modified, now) < older_than_s:
                continue
            key = self._relative(item.name)
            self._call("cleanup", key, self._delete_one, item.name)
            removed += 1
            logger.info(
                "%s: removed the unfinished upload of %s (last block staged %s)",
                self.url,
                key,
                item.last_modified.isoformat(timespec="seconds")
                if item.last_modified
                else "at an unknown time",
                extra={"stage": "cleanup", "destination": self.url},
            )
        return removed


def _identity() -> Any:
    """azure-identity's ``DefaultAzureCredential``, imported only for a destination that uses
    it (its import costs memory and time a key never needs); no token is asked for yet."""
    from azure.identity import DefaultAzureCredential

    # The SDK's own retries of the token request stay on: they are its network, not Blob
    # Storage's; a token that cannot be had is a ClientAuthenticationError (exit 4, a hint).
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


class _Download:
    """A ``StorageStreamDownloader`` as a ``ClosableReader``."""

    def __init__(self, downloader: Any) -> None:
        self.downloader = downloader

    def read(self, size: int = -1, /) -> bytes:
        data: bytes = self.downloader.read(size if size is not None and size >= 0 else -1)
        return data

    def close(self) -> None:
        self.downloader = None


class _Empty:
    def read(self, size: int = -1, /) -> bytes:
        return b""

    def close(self) -> None:
        return None
