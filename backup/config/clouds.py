"""The settings of the cloud destinations (s3://, b2://, gs://, azure://): their credentials, read
and checked before anything runs (the dataclasses are in ``model.py``).

Google Cloud Storage: ``GOOGLE_APPLICATION_CREDENTIALS`` names a service-account key file (or
holds its JSON; ``GOOGLE_APPLICATION_CREDENTIALS_FILE`` names the file too, as every secret's
``_FILE``); it must be a JSON object of ``"type": "service_account"`` with its ``client_email``,
``private_key`` and ``token_uri``, or of ``"type": "external_account"`` (workload identity
federation: a token of another identity provider, such as a Kubernetes service account token,
exchanged at Google's STS) with its ``audience``, ``subject_token_type``, ``token_url`` and
``credential_source``. Without a key, Application Default Credentials
(``google.auth.default``: GKE Workload Identity through the metadata server, a VM's service
account, gcloud's login), found when the backend opens (``storage/gcs``: none found is exit 2).
``GCS_ENDPOINT_URL`` is a private endpoint (same credentials); ``STORAGE_EMULATOR_HOST``
(Google's own variable) an emulator, unauthenticated.

Azure Blob Storage: ``AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT`` with
``AZURE_STORAGE_KEY`` or ``AZURE_STORAGE_SAS_TOKEN``, or ``AZURE_STORAGE_ACCOUNT`` alone: the
pod's workload identity or the machine's managed identity through azure-identity's
``DefaultAzureCredential`` (exactly one way); ``AZURE_STORAGE_ENDPOINT`` for Azurite, a
sovereign cloud or a private endpoint. The account is always named by a variable, never by the
URL: ``az://container/prefix``.

The checks read the values only when a destination of that kind is configured (the variables
may be set for other programs); a problem names the variable and never quotes a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from backup.config import files, syntax
from backup.config.model import AzureConfig, B2Config, GCSConfig, S3Config, Secret
from backup.config.reader import Reader

GCS_SCHEMES = frozenset({"gs"})
AZURE_SCHEMES = frozenset({"azure", "az"})
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")
# https://google.aip.dev/auth/4117 (external account credentials)
EXTERNAL_ACCOUNT_FIELDS = ("audience", "subject_token_type", "token_url")
# https://learn.microsoft.com/azure/storage/common/storage-account-overview#storage-account-name
AZURE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
S3_SSE_CHOICES = ("AES256", "aws:kms", "aws:kms:dsse")
B2_KEY_ID = re.compile(r"[A-Za-z0-9]{1,64}")
AZURE_WAYS = "AZURE_STORAGE_ACCOUNT (alone: the workload or managed identity; or with "
AZURE_WAYS += "AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN), or AZURE_STORAGE_CONNECTION_STRING"


def read_gcs(r: Reader, schemes: set[str]) -> GCSConfig:
    """GCS settings. The key: GOOGLE_APPLICATION_CREDENTIALS (a key file's path, or the JSON
    itself) or GOOGLE_APPLICATION_CREDENTIALS_FILE (the file holding it); without one,
    Application Default Credentials. STORAGE_EMULATOR_HOST: an emulator, unauthenticated."""
    key = r.secret("GOOGLE_APPLICATION_CREDENTIALS")
    endpoint = _endpoint(r, "GCS_ENDPOINT_URL", r.str("GCS_ENDPOINT_URL"))
    emulator = _emulator(r, r.str("STORAGE_EMULATOR_HOST"))
    if not GCS_SCHEMES & schemes:
        return GCSConfig(endpoint_url=endpoint)
    if endpoint and emulator:
        r.problems.append(
            "GCS_ENDPOINT_URL and STORAGE_EMULATOR_HOST are both set: keep one (the emulator's "
            "is unauthenticated, GCS_ENDPOINT_URL's uses the credentials)"
        )
    path: str | None = None
    inline: Secret | None = None
    if key:
        value = key.reveal()
        from_file = value != r.env.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip()
        name = "GOOGLE_APPLICATION_CREDENTIALS" + ("_FILE" if from_file else "")
        if from_file or value.lstrip().startswith("{"):
            problem = service_account_json_problem(value, "the key")
            inline = key
        else:
            problem = service_account_problem(value)
            path = value
        if problem:
            r.problems.append(f"{name}: {problem}")
            r.hints.append(
                "GOOGLE_APPLICATION_CREDENTIALS names a service-account key file (JSON, "
                "created under IAM > Service accounts > Keys) or a workload identity "
                "federation configuration (external_account), or holds that JSON; leave it "
                "unset to use GKE's Workload Identity"
            )
            path, inline = None, None
    return GCSConfig(
        credentials_file=path,
        private_key=_private_key(path) if path else None,
        credentials_json=inline,
        endpoint_url=emulator or endpoint,
        emulator=bool(emulator),
    )


def _emulator(r: Reader, value: str | None) -> str | None:
    """STORAGE_EMULATOR_HOST as Google's libraries read it: ``host:port`` or a URL."""
    if not value:
        return None
    url = value if "://" in value else f"http://{value}"
    return _endpoint(r, "STORAGE_EMULATOR_HOST", url)


def service_account_problem(path: str) -> str | None:
    """Why ``path`` is not a usable service-account key file, or ``None``; never quotes it."""
    try:
        text = files.read_small_text(path)
    except files.FileProblem as err:
        return str(err)
    return service_account_json_problem(text, path)


def service_account_json_problem(text: str, path: str) -> str | None:
    """Why ``text`` (named ``path`` in the problem) is neither a service-account key nor an
    ``external_account`` configuration (workload identity federation); never quotes it."""
    try:
        info = json.loads(text)
    except ValueError:
        return f"{path} is not JSON"
    if not isinstance(info, dict):
        return f"{path} is not a JSON object"
    kind = info.get("type")
    if kind == "external_account":
        return _external_account_problem(info, path)
    if kind != "service_account":
        shown = syntax.shown(kind) if isinstance(kind, str) else "missing"
        return (
            f"{path} is not a service-account key (its type is {shown}, not service_account "
            "nor external_account; for GKE Workload Identity, leave "
            "GOOGLE_APPLICATION_CREDENTIALS unset)"
        )
    missing = [f for f in SERVICE_ACCOUNT_FIELDS if not isinstance(info.get(f), str)]
    if missing:
        return f"{path} lacks {', '.join(missing)}"
    return None


def _external_account_problem(info: dict[str, object], path: str) -> str | None:
    """What google-auth needs of an ``external_account`` file (``gcloud iam
    workload-identity-pools create-cred-config`` writes one): the pool's audience, the subject
    token's type and where to read it (a file, a URL, AWS or an executable)."""
    missing = [f for f in EXTERNAL_ACCOUNT_FIELDS if not isinstance(info.get(f), str)]
    if not isinstance(info.get("credential_source"), dict):
        missing.append("credential_source")
    if missing:
        return f"{path} (an external_account configuration) lacks {', '.join(missing)}"
    return None


def _private_key(path: str) -> Secret | None:
    """The private key of a key file ``service_account_problem`` accepted (for the redaction)."""
    try:
        key = json.loads(files.read_small_text(path)).get("private_key")
    except (files.FileProblem, ValueError, AttributeError):
        return None
    return Secret(key.strip()) if isinstance(key, str) and key.strip() else None


def read_azure(r: Reader, schemes: set[str]) -> AzureConfig:
    """Azure settings; with an azure:// destination, exactly one way to authenticate: a
    connection string, an account with its key or SAS, or an account alone (its identity)."""
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
    elif config.account_key or config.sas_token:
        if not config.account_name:
            if not any(p.startswith("AZURE_STORAGE_ACCOUNT") for p in r.problems):
                r.problems.append("AZURE_STORAGE_ACCOUNT is required with AZURE_STORAGE_KEY/SAS")
        elif config.account_key and config.sas_token:
            r.problems.append("AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN are both set")
        if config.account_key and not _is_base64(config.account_key.reveal()):
            r.problems.append("AZURE_STORAGE_KEY is not an account key (base64, from Access keys)")
        if config.sas_token and "sig=" not in config.sas_token.reveal():
            r.problems.append("AZURE_STORAGE_SAS_TOKEN is not a SAS token (it has no sig=)")
    elif config.account_name:
        if config.endpoint_url and not config.endpoint_url.startswith("https://"):
            r.problems.append(
                "AZURE_STORAGE_ENDPOINT must be https:// with the workload or managed identity "
                "(Azure sends its tokens over TLS only)"
            )
    elif not any(p.startswith("AZURE_STORAGE") for p in r.problems):
        r.problems.append(
            "AZURE_STORAGE_ACCOUNT is required for azure:// destinations (the storage account "
            "of the container; with no key, SAS nor connection string, the pod's workload or "
            "managed identity is used)"
        )
    if len(r.problems) > before:
        r.hints.append(f"Azure: set {AZURE_WAYS}")
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


def read_b2(r: Reader, schemes: set[str], bucket: str | None) -> B2Config:
    """b2:// destinations: B2_KEY_ID and B2_APPLICATION_KEY, both required when one is
    configured; B2_SSE."""
    b2 = B2Config(
        key_id=r.check("B2_KEY_ID", r.str("B2_KEY_ID"), _b2_key_id_problem),
        application_key=r.secret("B2_APPLICATION_KEY"),
        bucket_name=bucket,
        sse_b2=r.bool("B2_SSE", False),
    )
    if "b2" in schemes:
        for name, value in (("B2_KEY_ID", b2.key_id), ("B2_APPLICATION_KEY", b2.application_key)):
            if not value and not any(p.startswith(name) for p in r.problems):
                r.problems.append(f"{name} is required for b2:// destinations")
    return b2


def read_s3(r: Reader, schemes: set[str]) -> S3Config:
    """s3:// destinations: the AWS keys (in pairs, or none: the instance's own credentials),
    the region, S3_ENDPOINT_URL, S3_SSE."""
    endpoint = r.str("S3_ENDPOINT_URL")
    if endpoint:
        _, problem = syntax.url_problem(endpoint, ("http", "https"))
        if problem:
            r.problems.append(f"S3_ENDPOINT_URL {problem}")
            endpoint = None
    region = r.str("AWS_REGION")
    default_region = r.str("AWS_DEFAULT_REGION")
    s3 = S3Config(
        access_key_id=r.str("AWS_ACCESS_KEY_ID"),
        secret_access_key=r.secret("AWS_SECRET_ACCESS_KEY"),
        session_token=r.secret("AWS_SESSION_TOKEN"),
        region=r.check("AWS_REGION", region, syntax.region_problem)
        or r.check("AWS_DEFAULT_REGION", None if region else default_region, syntax.region_problem),
        endpoint_url=endpoint,
        sse=_s3_sse(r),
    )
    if "s3" in schemes:
        _s3_credentials_problems(r, s3)
    return s3


def _s3_credentials_problems(r: Reader, s3: S3Config) -> None:
    """Keys come in pairs: one without the other would be refused by botocore only once the
    first request is made (exit 1, PartialCredentialsError). Neither means the instance's own
    credentials (a role, web identity)."""
    if any(p.startswith(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")) for p in r.problems):
        return
    key_id, secret = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE)"
    if s3.secret_access_key and not s3.access_key_id:
        r.problems.append(f"{secret} is set but {key_id} is not: set both, or neither")
    elif s3.access_key_id and not s3.secret_access_key:
        r.problems.append(f"{key_id} is set but {secret} is not: set both, or neither")
    elif s3.session_token and not s3.access_key_id:
        r.problems.append(
            "AWS_SESSION_TOKEN (or AWS_SESSION_TOKEN_FILE) is set without AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY: temporary credentials are the three together"
        )


def _b2_key_id_problem(value: str) -> str | None:
    if B2_KEY_ID.fullmatch(value):
        return None
    return "is not a B2 key ID (letters and digits, like 0012ab34cd56ef7000000001)"


def _s3_sse(r: Reader) -> str | None:
    raw = r.str("S3_SSE")
    if raw is None or raw in S3_SSE_CHOICES:
        return raw
    r.problems.append(f"S3_SSE={syntax.shown(raw)} must be one of: {', '.join(S3_SSE_CHOICES)}")
    return None
