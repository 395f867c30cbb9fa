"""The credentials of gs:// and azure:// destinations, read and checked before anything runs.

Google Cloud Storage: ``GOOGLE_APPLICATION_CREDENTIALS`` names a service-account key file; it
must be a readable JSON object of ``"type": "service_account"`` with its ``client_email``,
``private_key`` and ``token_uri``. ``GCS_ENDPOINT_URL`` points at an emulator or a private
endpoint; with it and no key file, requests go unauthenticated (an emulator). Nothing else is
looked for: no metadata server, no gcloud user login, no ``STORAGE_EMULATOR_HOST``.

Azure Blob Storage: ``AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT`` with
``AZURE_STORAGE_KEY`` or ``AZURE_STORAGE_SAS_TOKEN`` (exactly one way), and
``AZURE_STORAGE_ENDPOINT`` for Azurite, a sovereign cloud or a private endpoint. No managed
identity or other ambient credential is used.

The checks read the values only when a destination of that kind is configured (the variables
may be set for other programs); a problem names the variable and never quotes a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from backup.config import files, syntax
from backup.config.model import AzureConfig, GCSConfig, Secret
from backup.config.reader import Reader

GCS_SCHEMES = frozenset({"gs"})
AZURE_SCHEMES = frozenset({"azure", "az"})
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")
# https://learn.microsoft.com/azure/storage/common/storage-account-overview#storage-account-name
AZURE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
AZURE_WAYS = "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or "
AZURE_WAYS += "AZURE_STORAGE_SAS_TOKEN"


def read_gcs(r: Reader, schemes: set[str]) -> GCSConfig:
    """GCS settings; with a gs:// destination, a key file or an endpoint is required."""
    path = r.str("GOOGLE_APPLICATION_CREDENTIALS")
    endpoint = _endpoint(r, "GCS_ENDPOINT_URL", r.str("GCS_ENDPOINT_URL"))
    if not GCS_SCHEMES & schemes:
        return GCSConfig(credentials_file=path, endpoint_url=endpoint)
    if path:
        problem = service_account_problem(path)
        if problem:
            r.problems.append(f"GOOGLE_APPLICATION_CREDENTIALS: {problem}")
            r.hints.append(
                "GOOGLE_APPLICATION_CREDENTIALS names a service-account key file (JSON, "
                "created under IAM > Service accounts > Keys)"
            )
            path = None
        else:
            return GCSConfig(path, endpoint, private_key=_private_key(path))
    elif not endpoint and not any(p.startswith("GCS_ENDPOINT_URL") for p in r.problems):
        r.problems.append(
            "GOOGLE_APPLICATION_CREDENTIALS is required for gs:// destinations (the path of a "
            "service-account key file)"
        )
    return GCSConfig(credentials_file=path, endpoint_url=endpoint)


def service_account_problem(path: str) -> str | None:
    """Why ``path`` is not a usable service-account key file, or ``None``; never quotes it."""
    try:
        text = files.read_small_text(path)
    except files.FileProblem as err:
        return str(err)
    try:
        info = json.loads(text)
    except ValueError:
        return f"{path} is not JSON"
    if not isinstance(info, dict):
        return f"{path} is not a JSON object"
    kind = info.get("type")
    if kind != "service_account":
        shown = syntax.shown(kind) if isinstance(kind, str) else "missing"
        return (
            f"{path} is not a service-account key (its type is {shown}, not service_account; "
            "user logins and workload identity are not used)"
        )
    missing = [f for f in SERVICE_ACCOUNT_FIELDS if not isinstance(info.get(f), str)]
    if missing:
        return f"{path} lacks {', '.join(missing)}"
    return None


def _private_key(path: str) -> Secret | None:
    """The private key of a key file ``service_account_problem`` accepted (for the redaction)."""
    try:
        key = json.loads(files.read_small_text(path)).get("private_key")
    except (files.FileProblem, ValueError, AttributeError):
        return None
    return Secret(key.strip()) if isinstance(key, str) and key.strip() else None


def read_azure(r: Reader, schemes: set[str]) -> AzureConfig:
    """Azure settings; with an azure:// destination, exactly one way to authenticate."""
    config = AzureConfig(
        connection_string=r.secret("AZURE_STORAGE_CONNECTION_STRING"),
        account_name=r.check("AZURE_STORAGE_ACCOUNT", r.str("AZURE_STORAGE_ACCOUNT"), _account),
        account_key=r.secret("AZURE_STORAGE_KEY"),
        sas_token=r.secret("AZURE_STORAGE_SAS_TOKEN"),
        endpoint_url=_endpoint(r, "AZURE_STORAGE_ENDPOINT", r.str("AZURE_STORAGE_ENDPOINT")),
    )
    if not AZURE_SCHEMES & schemes:
        return config
    before = len(r.problems)
    if config.connection_string:
        others = [
            name
            for name, value in (
                ("AZURE_STORAGE_ACCOUNT", config.account_name),
                ("AZURE_STORAGE_KEY", config.account_key),
                ("AZURE_STORAGE_SAS_TOKEN", config.sas_token),
                ("AZURE_STORAGE_ENDPOINT", config.endpoint_url),
            )
            if value
        ]
        if others:
            r.problems.append(
                f"AZURE_STORAGE_CONNECTION_STRING and {', '.join(others)} are both set: the "
                "connection string holds the account, its key or SAS and the endpoint; keep one"
            )
        problem = connection_string_problem(config.connection_string.reveal())
        if problem:
            r.problems.append(f"AZURE_STORAGE_CONNECTION_STRING {problem}")
    elif config.account_name or config.account_key or config.sas_token:
        if not config.account_name:
            if not any(p.startswith("AZURE_STORAGE_ACCOUNT") for p in r.problems):
                r.problems.append("AZURE_STORAGE_ACCOUNT is required with AZURE_STORAGE_KEY/SAS")
        elif config.account_key and config.sas_token:
            r.problems.append("AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN are both set")
        elif not config.account_key and not config.sas_token:
            r.problems.append(
                "AZURE_STORAGE_ACCOUNT needs AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN"
            )
        if config.account_key and not _is_base64(config.account_key.reveal()):
            r.problems.append("AZURE_STORAGE_KEY is not an account key (base64, from Access keys)")
        if config.sas_token and "sig=" not in config.sas_token.reveal():
            r.problems.append("AZURE_STORAGE_SAS_TOKEN is not a SAS token (it has no sig=)")
    elif not any(p.startswith("AZURE_STORAGE") for p in r.problems):
        r.problems.append(f"azure:// destinations need {AZURE_WAYS}")
    if len(r.problems) > before:
        r.hints.append(f"Azure: set {AZURE_WAYS} (from the storage account's Access keys or SAS)")
    return config


def connection_string_problem(value: str) -> str | None:
    """Why ``value`` is not an Azure Storage connection string with credentials; never quotes
    it (it holds the key)."""
    pairs: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        name, sep, item = part.partition("=")
        if not sep or not name.strip():
            return "is not a connection string (Name=value pairs separated by ';')"
        pairs[name.strip().lower()] = item.strip()
    if not pairs.get("accountname") and not pairs.get("blobendpoint"):
        return "names no AccountName nor BlobEndpoint"
    if pairs.get("accountkey"):
        if not pairs.get("accountname"):
            return "has an AccountKey but no AccountName"
        if not _is_base64(pairs["accountkey"]):
            return "has an AccountKey that is not base64"
        return None
    if pairs.get("sharedaccesssignature"):
        return None
    return "holds no AccountKey nor SharedAccessSignature (anonymous access is not used)"


def _endpoint(r: Reader, name: str, value: str | None) -> str | None:
    if not value:
        return None
    _, problem = syntax.url_problem(value, ("http", "https"))
    if problem:
        r.problems.append(f"{name} {problem}")
        return None
    return value.rstrip("/")


def _account(value: str) -> str | None:
    if AZURE_ACCOUNT.fullmatch(value):
        return None
    return f"={syntax.shown(value)} is not a storage account name (3-24 lowercase letters, digits)"


def _is_base64(value: str) -> bool:
    try:
        return bool(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return False
