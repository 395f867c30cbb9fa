"""What an Azure Blob Storage failure means: worth another attempt or not, and what to check.

Owns the classification ``retry.py`` asks for (``is_permanent``) and the translation of any
exception from azure-core / azure-storage-blob into the ``StorageError`` / ``ObjectNotFound``
the rest of the job sees (``storage_error``), with secrets redacted from its text.
"""

from __future__ import annotations

from azure.core import exceptions as azexc

from backup.errors import ObjectNotFound, StorageError
from backup.log import redact

# https://learn.microsoft.com/azure/storage/blobs/storage-retry-policy
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CREDENTIALS = "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY "
CREDENTIALS += "or AZURE_STORAGE_SAS_TOKEN (or alone, with the pod's identity)"
# The built-in role that reads, writes, lists and deletes blobs, for an identity:
# https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage#storage-blob-data-contributor
DATA_ROLE = "Storage Blob Data Contributor"
IDENTITY_HINT = (
    'no identity gave a token: on AKS, label the pod azure.workload.identity/use: "true" and '
    "annotate its service account with azure.workload.identity/client-id (docs/azure.md); or "
    "give the machine a managed identity; or set AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN"
)


def error_code(err: BaseException | None) -> str:
    """The Azure error code (``BlobNotFound``, ``AuthenticationFailed``...), else ``""``."""
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code) or "")


def status_of(err: BaseException) -> int:
    status = getattr(err, "status_code", None)
    return status if isinstance(status, int) else 0


def is_permanent(err: BaseException) -> bool:
    """True for errors another attempt cannot fix (credentials, missing container, 4xx)."""
    if isinstance(err, azexc.ServiceRequestError | azexc.ServiceResponseError):
        return False  # no answer, or a broken one: the network
    if isinstance(err, azexc.HttpResponseError):
        return status_of(err) not in TRANSIENT_STATUS
    if isinstance(err, azexc.ClientAuthenticationError):
        return True
    return not isinstance(err, OSError)


def storage_error(
    err: BaseException,
    *,
    url: str,
    container: str,
    action: str,
    key: str,
    secrets: tuple[str, ...] = (),
) -> StorageError:
    """``err``, raised by ``action`` on ``key``, as a ``StorageError`` with a hint; a missing
    blob on download is ``ObjectNotFound``. A ``StorageError`` is returned as is."""
    if isinstance(err, StorageError):
        return err
    code = error_code(err)
    status = status_of(err)
    if action == "download" and code == "BlobNotFound":
        return ObjectNotFound(f"{url}: no object {key}")
    if isinstance(err, azexc.ClientAuthenticationError) and not status:
        # azure-identity's: no credential of DefaultAzureCredential's chain gave a token.
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = f"no token: {type(err).__name__}: {first}"
        hint = IDENTITY_HINT
    elif isinstance(err, azexc.HttpResponseError):
        message = str(getattr(err, "reason", "") or "") or code
        detail = f"{status} {code or message}"
        hint = hint_for_code(code, status, container)
    elif isinstance(err, azexc.ServiceRequestError | azexc.ServiceResponseError | OSError):
        detail = f"{type(err).__name__}: {err}"
        hint = (
            "the endpoint was unreachable after retries: check AZURE_STORAGE_ENDPOINT (or the "
            "connection string's BlobEndpoint), the account name and network"
        )
    else:
        detail = f"{type(err).__name__}: {err}"
        hint = f"check {CREDENTIALS} and BACKUP_DESTINATIONS"
    detail = redact(detail[:400], secrets)
    return StorageError(f"{url}: {action} {key} failed: {detail}", hint=hint)


def hint_for_code(code: str, status: int, container: str) -> str:
    """What to check for an Azure error: the variable most likely wrong."""
    if code == "ContainerNotFound":
        return (
            f"container {container!r} does not exist in this storage account: check the "
            "container name in BACKUP_DESTINATIONS and the account"
        )
    if code in ("AuthenticationFailed", "AuthorizationFailure", "InvalidAuthenticationInfo") or (
        status == 403 and not code.startswith("AuthorizationPermission")
    ):
        return (
            f"the storage account refused the credentials: check {CREDENTIALS} (a key may have "
            "been rotated, a SAS token may have expired)"
        )
    if code.startswith("AuthorizationPermission") or code in ("AuthorizationResourceTypeMismatch",):
        return (
            f"the credentials may not do this on container {container!r}: an identity needs "
            f"the {DATA_ROLE} role on the container (or its account); a SAS needs read, "
            "add, create, write, delete and list permissions on the container (sr=c or an "
            "account SAS with srt=co)"
        )
    return f"check {CREDENTIALS} and BACKUP_DESTINATIONS"
