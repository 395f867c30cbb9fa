"""gs:// and azure:// credentials: what the configuration accepts and refuses (exit 2, naming
the variable, never quoting a secret). Plain unit tests of ``backup.config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backup.config import load
from backup.errors import ConfigError

KEY = "Zm9vYmFyYmF6cXV4"  # base64
BASE = {"PGDATABASE": "app"}


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        load({**BASE, **env})
    assert raised.value.exit_code == 2
    return str(raised.value)


def key_file(tmp_path: Path, **fields: object) -> str:
    info = {
        "type": "service_account",
        "client_email": "a@p.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nsecret-body\n-----END PRIVATE KEY-----\n",
        "token_uri": "https://oauth2.googleapis.com/token",
        **fields,
    }
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    return str(path)


def test_gcs_with_a_key_file(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    config = load(
        {**BASE, "BACKUP_DESTINATIONS": "gs://b_1x/p", "GOOGLE_APPLICATION_CREDENTIALS": path}
    )
    assert config.storage.gcs.credentials_file == path
    assert config.storage.gcs.endpoint_url is None


def test_gcs_emulator_without_a_key() -> None:
    """STORAGE_EMULATOR_HOST, as Google's libraries read it (host:port or a URL): an emulator,
    unauthenticated."""
    for value in ("127.0.0.1:9", "http://127.0.0.1:9/"):
        config = load({**BASE, "BACKUP_DESTINATIONS": "gs://bkt/p", "STORAGE_EMULATOR_HOST": value})
        assert config.storage.gcs.endpoint_url == "http://127.0.0.1:9"
        assert config.storage.gcs.auth == "anonymous"


def test_gcs_endpoint_without_a_key_uses_default_credentials() -> None:
    config = load(
        {**BASE, "BACKUP_DESTINATIONS": "gs://bkt/p", "GCS_ENDPOINT_URL": "https://gcs.corp:9/"}
    )
    assert config.storage.gcs.endpoint_url == "https://gcs.corp:9"
    assert config.storage.gcs.auth == "default"


def test_gcs_two_endpoints_refused() -> None:
    message = refused(
        {
            "BACKUP_DESTINATIONS": "gs://bkt/p",
            "GCS_ENDPOINT_URL": "http://127.0.0.1:9",
            "STORAGE_EMULATOR_HOST": "127.0.0.1:9",
        }
    )
    assert "GCS_ENDPOINT_URL and STORAGE_EMULATOR_HOST are both set" in message


def test_gcs_key_json_inline_and_from_a_file(tmp_path: Path) -> None:
    """The key's JSON in GOOGLE_APPLICATION_CREDENTIALS itself, or in the file
    GOOGLE_APPLICATION_CREDENTIALS_FILE names (every secret's _FILE): a secret, its private key
    redacted from every log line."""
    text = Path(key_file(tmp_path)).read_text()
    inline = load(
        {**BASE, "BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS": text}
    )
    from_file = load(
        {
            **BASE,
            "BACKUP_DESTINATIONS": "gs://bkt/p",
            "GOOGLE_APPLICATION_CREDENTIALS_FILE": key_file(tmp_path),
        }
    )
    for config in (inline, from_file):
        assert config.storage.gcs.auth == "key_json"
        assert config.storage.gcs.credentials_file is None
        assert "secret-body" in config.secrets()
        assert "secret-body" not in repr(config)


def test_gcs_key_json_refused_names_the_variable(tmp_path: Path) -> None:
    path = key_file(tmp_path, type="authorized_user")
    message = refused(
        {"BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS_FILE": path}
    )
    assert "GOOGLE_APPLICATION_CREDENTIALS_FILE: the key is not a service-account key" in message
    assert "secret-body" not in message
    both = refused(
        {
            "BACKUP_DESTINATIONS": "gs://bkt/p",
            "GOOGLE_APPLICATION_CREDENTIALS": path,
            "GOOGLE_APPLICATION_CREDENTIALS_FILE": path,
        }
    )
    assert "GOOGLE_APPLICATION_CREDENTIALS and GOOGLE_APPLICATION_CREDENTIALS_FILE" in both
    bad = refused({"BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS": "{x"})
    assert "GOOGLE_APPLICATION_CREDENTIALS: the key is not JSON" in bad


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "authorized_user"}, "not a service-account key"),
        ({"type": None}, "not a service-account key"),
        ({"private_key": None}, "lacks private_key"),
    ],
)
def test_gcs_key_files_refused(tmp_path: Path, fields: dict, expected: str) -> None:
    path = key_file(tmp_path, **fields)
    message = refused({"BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS": path})
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message and expected in message
    assert "secret-body" not in message


def test_gcs_key_file_unreadable_or_not_json(tmp_path: Path) -> None:
    missing = refused(
        {"BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent.json"}
    )
    assert "GOOGLE_APPLICATION_CREDENTIALS: cannot read /nonexistent.json" in missing
    bad = tmp_path / "k.json"
    bad.write_text("not json")
    assert "is not JSON" in refused(
        {"BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS": str(bad)}
    )


def test_gcs_without_a_key_uses_default_credentials() -> None:
    """No key and no emulator: Application Default Credentials (GKE Workload Identity), found
    when the backend opens (tests/e2e/test_cloud_identity.py)."""
    config = load({**BASE, "BACKUP_DESTINATIONS": "gs://bkt/p"})
    assert config.storage.gcs.auth == "default"
    assert config.storage.gcs.endpoint_url is None


def test_a_key_file_is_not_read_without_a_gs_destination() -> None:
    config = load({**BASE, "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent.json"})
    assert config.storage.destinations == ("file://./backups",)


def test_azure_ways() -> None:
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
    config = load(
        {**BASE, "BACKUP_DESTINATIONS": "azure://cont/p", "AZURE_STORAGE_CONNECTION_STRING": conn}
    )
    assert config.storage.azure.connection_string is not None
    assert conn in config.secrets()
    config = load(
        {
            **BASE,
            "BACKUP_DESTINATIONS": "az://cont/p",
            "AZURE_STORAGE_ACCOUNT": "acct",
            "AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=abc",
        }
    )
    assert config.storage.azure.sas_token is not None
    assert not config.storage.azure.uses_identity


def test_azure_account_alone_uses_the_identity() -> None:
    config = load({**BASE, "BACKUP_DESTINATIONS": "az://cont/p", "AZURE_STORAGE_ACCOUNT": "acct"})
    assert config.storage.azure.uses_identity
    assert config.storage.azure.account_name == "acct"
    message = refused(
        {
            "BACKUP_DESTINATIONS": "az://cont/p",
            "AZURE_STORAGE_ACCOUNT": "acct",
            "AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:10000/acct",
        }
    )
    assert "AZURE_STORAGE_ENDPOINT must be https://" in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "AZURE_STORAGE_ACCOUNT is required for azure:// destinations"),
        ({"AZURE_STORAGE_ENDPOINT": "https://x.example"}, "AZURE_STORAGE_ACCOUNT is required"),
        ({"AZURE_STORAGE_KEY": KEY}, "AZURE_STORAGE_ACCOUNT is required"),
        ({"AZURE_STORAGE_ACCOUNT": "Bad_Name", "AZURE_STORAGE_KEY": KEY}, "AZURE_STORAGE_ACCOUNT"),
        ({"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": "not base64!"}, "not an account"),
        ({"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_SAS_TOKEN": "sv=1"}, "no sig="),
        (
            {
                "AZURE_STORAGE_ACCOUNT": "acct",
                "AZURE_STORAGE_KEY": KEY,
                "AZURE_STORAGE_SAS_TOKEN": "sig=1",
            },
            "both set",
        ),
        ({"AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct"}, "no AccountKey nor Shared"),
        ({"AZURE_STORAGE_CONNECTION_STRING": "garbage"}, "is not a connection string"),
        (
            {
                "AZURE_STORAGE_CONNECTION_STRING": f"AccountName=a;AccountKey={KEY}",
                "AZURE_STORAGE_KEY": KEY,
            },
            "keep one",
        ),
    ],
)
def test_azure_refusals(env: dict[str, str], expected: str) -> None:
    message = refused({"BACKUP_DESTINATIONS": "azure://cont/p", **env})
    assert expected in message
    assert KEY not in message


@pytest.mark.parametrize("container", ["ab", "Upper", "a--b", "-ab", "under_score", "dot.ted"])
def test_azure_container_names(container: str) -> None:
    assert "invalid container name" in refused(
        {"BACKUP_DESTINATIONS": f"azure://{container}/p", "AZURE_STORAGE_ACCOUNT": "acct"}
    )


FEDERATION = {
    "type": "external_account",
    "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/"
    "providers/k",
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "token_url": "https://sts.googleapis.com/v1/token",
    "credential_source": {"file": "/var/run/secrets/tokens/gcp-ksa/token"},
}


def test_gcs_external_account_is_accepted_as_a_file_or_inline(tmp_path: Path) -> None:
    """Workload identity federation: an external_account configuration, named or inline."""
    path = tmp_path / "federation.json"
    path.write_text(json.dumps(FEDERATION))
    named = load(
        {**BASE, "BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    )
    assert (named.storage.gcs.auth, named.storage.gcs.credentials_file) == ("key_file", str(path))
    inline = load(
        {
            **BASE,
            "BACKUP_DESTINATIONS": "gs://bkt/p",
            "GOOGLE_APPLICATION_CREDENTIALS": json.dumps(FEDERATION),
        }
    )
    assert inline.storage.gcs.auth == "key_json"


@pytest.mark.parametrize(
    "missing", ["audience", "subject_token_type", "token_url", "credential_source"]
)
def test_gcs_external_account_lacking_a_field_is_refused(tmp_path: Path, missing: str) -> None:
    path = tmp_path / "federation.json"
    path.write_text(json.dumps({k: v for k, v in FEDERATION.items() if k != missing}))
    message = refused(
        {"BACKUP_DESTINATIONS": "gs://bkt/p", "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    )
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert f"(an external_account configuration) lacks {missing}" in message
