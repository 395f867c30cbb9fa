"""What a GCS failure means: worth another attempt or not, and what the user should check.

Owns the classification ``retry.py`` asks for (``is_permanent``) and the translation of any
exception from google-cloud-storage, google-auth or requests into the ``StorageError`` /
``ObjectNotFound`` the rest of the job sees (``storage_error``), redacted like every error.
"""

from __future__ import annotations

import requests
import urllib3
from google.api_core import exceptions as gexc
from google.auth import exceptions as authexc

from backup.errors import ObjectNotFound, StorageError
from backup.log import redact

# https://cloud.google.com/storage/docs/retry-strategy#retryable-errors
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
ROLE_HINT = (
    "the service account needs roles/storage.objectAdmin on bucket {bucket!r} (or "
    "storage.objects.create, .get, .list and .delete)"
)
# The IAM permission each action needs: https://cloud.google.com/storage/docs/access-control/iam-json
PERMISSIONS = {
    "upload": "storage.objects.create (and storage.objects.delete to replace an object)",
    "download": "storage.objects.get",
    "list": "storage.objects.list",
    "delete": "storage.objects.delete",
}


def status_of(err: BaseException) -> int:
    """The HTTP status of a GCS error, else 0."""
    if isinstance(err, gexc.GoogleAPICallError) and isinstance(err.code, int):
        return err.code
    return 0


def is_permanent(err: BaseException) -> bool:
    """True for errors another attempt cannot fix (a refused key, a missing bucket, 4xx)."""
    if isinstance(err, authexc.RefreshError):
        return not getattr(err, "retryable", False)
    if isinstance(err, authexc.TransportError):
        return False
    status = status_of(err)
    if status:
        return status not in TRANSIENT_STATUS
    return not isinstance(err, requests.RequestException | urllib3.exceptions.HTTPError | OSError)


def storage_error(
    err: BaseException,
    *,
    url: str,
    bucket: str,
    action: str,
    key: str,
    secrets: tuple[str, ...] = (),
) -> StorageError:
    """``err``, raised by ``action`` on ``key``, as a ``StorageError`` with a hint; a missing
    object on download is ``ObjectNotFound``. A ``StorageError`` is returned as is. ``secrets``
    (a resumable session's URL: whoever holds it may write the upload) are redacted."""
    if isinstance(err, StorageError):
        return err
    status = status_of(err)
    if action == "download" and status == 404:
        return ObjectNotFound(f"{url}: no object {key}")
    if isinstance(err, authexc.RefreshError):
        detail = f"no access token: {redact(str(err)[:200], secrets)}"
        hint = (
            "check GOOGLE_APPLICATION_CREDENTIALS: the key may be deleted, disabled or of "
            "another project (IAM > Service accounts > Keys); with Workload Identity (no key), "
            "the Kubernetes service account's iam.gke.io/gcp-service-account annotation and "
            "the Google service account's roles/iam.workloadIdentityUser binding; with "
            "workload identity federation (an external_account file), its pool provider, the "
            "subject token file and the principal's binding (docs/gcs.md)"
        )
    elif status == 403:
        detail = f"{status}: {_message(err)}"
        needed = PERMISSIONS.get(action)
        hint = (
            f"the credentials lack {needed} on bucket {bucket!r}; "
            if needed
            else "check GOOGLE_APPLICATION_CREDENTIALS; "
        ) + ROLE_HINT.format(bucket=bucket)
    elif status == 401:
        detail = f"{status}: {_message(err)}"
        hint = "check GOOGLE_APPLICATION_CREDENTIALS: the credentials were not accepted"
    elif status == 404:
        detail = f"404: {_message(err)}"
        hint = (
            f"bucket {bucket!r} does not exist at this endpoint: check the bucket name in "
            "BACKUP_DESTINATIONS (and GCS_ENDPOINT_URL or STORAGE_EMULATOR_HOST)"
        )
    elif status:
        detail = f"{status}: {_message(err)}"
        hint = "Google Cloud Storage refused the request: check BACKUP_DESTINATIONS"
    elif isinstance(
        err,
        requests.RequestException | authexc.TransportError | urllib3.exceptions.HTTPError | OSError,
    ):
        detail = f"{type(err).__name__}: {err}"
        hint = (
            "the endpoint was unreachable after retries: check GCS_ENDPOINT_URL (or "
            "STORAGE_EMULATOR_HOST) and the network"
        )
    else:
        detail = f"{type(err).__name__}: {err}"
        hint = "check GOOGLE_APPLICATION_CREDENTIALS, GCS_ENDPOINT_URL and BACKUP_DESTINATIONS"
    return StorageError(f"{url}: {action} {key} failed: {redact(detail, secrets)}", hint=hint)


def _message(err: BaseException) -> str:
    if isinstance(err, gexc.GoogleAPICallError):
        return str(err.message).strip()[:300]
    return str(err)[:300]
