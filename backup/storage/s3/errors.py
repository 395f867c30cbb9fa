"""What an S3 failure means: worth another attempt or not, and what the user should check.

Owns the classification ``retry.py`` asks for (``is_permanent``), the S3 error code of a botocore
exception (``error_code``), the hint for each code (``hint_for_code``) and the translation of any
exception from boto3 into the ``StorageError`` / ``ObjectNotFound`` the rest of the job sees
(``storage_error``), with secrets redacted from its text. ``client.py`` sends the requests.
"""

from __future__ import annotations

import urllib3
from botocore import exceptions as botoexc

from backup.errors import ObjectNotFound, StorageError
from backup.log import redact

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


def error_code(err: BaseException | None) -> str:
    """The S3 error code of a ``ClientError`` (``NoSuchKey``, ``AccessDenied``...), else ``""``."""
    if isinstance(err, botoexc.ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def is_permanent(err: BaseException) -> bool:
    """True for errors another attempt cannot fix (credentials, missing bucket, bad request)."""
    if isinstance(err, botoexc.ClientError):
        code = error_code(err)
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return not (code in TRANSIENT_CODES or status >= 500 or status in (408, 429))
    if isinstance(
        err, botoexc.ConnectionError | botoexc.HTTPClientError | botoexc.IncompleteReadError
    ):
        return False
    if isinstance(err, botoexc.BotoCoreError):
        return True  # botoexc.NoCredentialsError, ParamValidationError, ...
    return not isinstance(err, OSError | urllib3.exceptions.HTTPError)


def storage_error(
    err: BaseException,
    *,
    url: str,
    bucket: str,
    action: str,
    key: str,
    secrets: tuple[str, ...] = (),
) -> StorageError:
    """``err``, raised by ``action`` on ``key``, as a ``StorageError`` with a hint.

    A ``StorageError`` is returned as is; a missing object on download is ``ObjectNotFound``.
    The message goes through the job's one redaction (``backup.log.redact``) with ``secrets``
    added, should a server echo one back.
    """
    if isinstance(err, StorageError):
        return err
    code = error_code(err)
    if action == "download" and code in ("NoSuchKey", "404", "NotFound"):
        return ObjectNotFound(f"{url}: no object {key}")
    if isinstance(err, botoexc.ClientError):
        detail = f"{code}: {err.response.get('Error', {}).get('Message') or code}"
        hint = hint_for_code(code, bucket)
    elif isinstance(err, botoexc.NoCredentialsError):
        detail = "no credentials"
        hint = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    elif isinstance(
        err,
        botoexc.ConnectionError | botoexc.HTTPClientError | botoexc.IncompleteReadError | OSError,
    ):
        detail = f"{type(err).__name__}: {err}"
        hint = "the endpoint was unreachable after retries: check S3_ENDPOINT_URL and network"
    else:
        detail = f"{type(err).__name__}: {err}"
        hint = DEFAULT_HINT
    detail = redact(detail, secrets)
    return StorageError(f"{url}: {action} {key} failed: {detail}", hint=hint)


def hint_for_code(code: str, bucket: str) -> str:
    """What to check for an S3 error ``code`` on ``bucket``: the variable most likely wrong."""
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
