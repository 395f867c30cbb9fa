"""What a B2 failure means to the user: b2sdk's exceptions as ``StorageError`` with a hint.

Owns the translation of any exception from b2sdk (or the HTTP stack below it) into the
``StorageError`` / ``ObjectNotFound`` the rest of the job sees (``storage_error``), with secrets
redacted from its text, the hint for each kind of failure, and which errors are a broken
transport rather than a refusal (``is_body_error``, ``is_transport_error``). ``storage.py`` does the
requests; b2sdk does the retries.
"""

from __future__ import annotations

import requests
import urllib3
from b2sdk.v2 import exception as b2exc

from backup.errors import ObjectNotFound, StorageError
from backup.log import redact

KEY_HINT = "check B2_KEY_ID and B2_APPLICATION_KEY (the application key, not the master key id)"


def storage_error(
    err: Exception,
    *,
    url: str,
    bucket_name: str,
    action: str,
    key: str,
    secrets: tuple[str, ...] = (),
) -> StorageError:
    """Translate a b2sdk error into ``StorageError``/``ObjectNotFound`` with a hint.

    A ``StorageError`` is returned as is; a missing file on download is ``ObjectNotFound``.
    The message goes through the job's one redaction (``backup.log.redact``) with ``secrets``
    added, should a server echo one back.
    """
    if isinstance(err, StorageError):
        return err
    if isinstance(err, b2exc.FileNotPresent) and action == "download":
        return ObjectNotFound(f"{url}: no object {key}")
    detail = f"{type(err).__name__}: {err}".replace("\n", "; ")
    detail = redact(detail, secrets)
    message = f"{url}: {action} {key} failed: {detail}"
    if isinstance(err, b2exc.MaxRetriesExceeded) and err.exception_info_list:
        err = err.exception_info_list[-1]  # the hint depends on why the tries failed
    if isinstance(err, b2exc.InvalidAuthToken | b2exc.RestrictedBucket):
        hint = KEY_HINT
    elif isinstance(err, b2exc.NonExistentBucket):
        hint = (
            f"bucket {bucket_name!r} does not exist or the key cannot see it: check the "
            "bucket in BACKUP_DESTINATIONS (or B2_BUCKET_NAME) and B2_KEY_ID"
        )
    elif isinstance(err, b2exc.Unauthorized):
        hint = (
            "the key in B2_KEY_ID lacks a capability or is restricted to another bucket or "
            "prefix: it needs listFiles, readFiles, writeFiles and deleteFiles"
        )
    elif isinstance(err, b2exc.CapExceeded):
        hint = "a B2 usage cap was reached: raise it in the Backblaze account's Caps & Alerts"
    elif isinstance(err, b2exc.B2ConnectionError | b2exc.UnknownHost) or is_transport_error(err):
        hint = "B2 was unreachable after retries: check network access to backblazeb2.com"
    else:
        hint = f"{KEY_HINT}, and the bucket in BACKUP_DESTINATIONS"
    return StorageError(message, hint=hint)


def is_body_error(err: BaseException) -> bool:
    """True for a transport error below b2sdk: a response body that broke while being read."""
    return isinstance(err, OSError | requests.RequestException | urllib3.exceptions.HTTPError)


def is_transport_error(err: BaseException) -> bool:
    """True for a network failure, below b2sdk or one b2sdk itself would have retried."""
    return is_body_error(err) or (isinstance(err, b2exc.B2Error) and err.should_retry_http())
