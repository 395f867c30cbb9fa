"""gs:// and az:// without a key: the pod's own identity (GKE Workload Identity through the
metadata server; AKS workload identity or a managed identity through azure-identity), and what
the job says when there is none. The metadata server is a local fake (Google's network edge);
the bucket is the real gcp-storage-emulator."""

from __future__ import annotations

import json
import socket
import urllib.parse

import pytest

from tests.conftest import run_job, unique_name
from tests.contract.test_gcs import key_file
from tests.fixtures.clouds import (
    FakeEntraTokenEndpoint,
    FakeManagedIdentity,
    FakeMetadataServer,
    GCSServer,
    TLSAzurite,
)
from tests.fixtures.compare import fingerprint_db
from tests.fixtures.http import RecordingServer
from tests.fixtures.http import recording_server as recording_server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _no_metadata() -> dict[str, str]:
    """google-auth's metadata server on a closed local port: off GCP, nothing answers (and
    nothing leaves the machine)."""
    host = f"127.0.0.1:{_closed_port()}"
    return {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host, "GCE_METADATA_TIMEOUT": "1"}


def test_gke_workload_identity_backs_up_and_restores(
    pg15, sample_db, job_env, tmp_path, gcs_server: GCSServer, gke_metadata: FakeMetadataServer
):
    """No key: Application Default Credentials ask the metadata server for a token, and every
    request to the bucket carries it."""
    url = f"gs://{gcs_server.create_bucket()}/pg"
    env = {
        **job_env,
        **gke_metadata.env,
        "HOME": str(tmp_path),  # no gcloud login to find
        "GCS_ENDPOINT_URL": gcs_server.endpoint_url,
        "BACKUP_DESTINATIONS": url,
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert gke_metadata.tokens >= 1
    assert gke_metadata.TOKEN not in result.output
    target = unique_name("from_wi")
    restored = run_job("restore", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_gcs_workload_identity_federation_backs_up_and_restores(
    pg15, sample_db, job_env, tmp_path, gcs_server: GCSServer, recording_server: RecordingServer
):
    """GOOGLE_APPLICATION_CREDENTIALS naming an external_account configuration (workload
    identity federation, as gcloud writes it for a pod on another cloud): google-auth reads
    the projected service account token from its file, exchanges it at the STS token_url,
    then for the service account it impersonates; the token never shows in the output."""
    subject = "eyJhbGciOiJSUzI1NiJ9.kubernetes-service-account-token.c2ln"
    (tmp_path / "token").write_text(subject)
    impersonate = "/v1/projects/-/serviceAccounts/pgbackup@p.iam.gserviceaccount.com"
    recording_server.respond(
        "/v1/token",
        body={
            "access_token": "ya29.federated",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        },
    )
    recording_server.respond(
        impersonate + ":generateAccessToken",
        body={"accessToken": "ya29.impersonated", "expireTime": "2099-01-01T00:00:00Z"},
    )
    audience = (
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
    )
    config = tmp_path / "federation.json"
    config.write_text(
        json.dumps(
            {
                "type": "external_account",
                "audience": audience,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": recording_server.url + "/v1/token",
                "service_account_impersonation_url": recording_server.url
                + impersonate
                + ":generateAccessToken",
                "credential_source": {"file": str(tmp_path / "token")},
            }
        )
    )
    env = {
        **job_env,
        **_no_metadata(),
        "HOME": str(tmp_path),
        "GCS_ENDPOINT_URL": gcs_server.endpoint_url,
        "GOOGLE_APPLICATION_CREDENTIALS": str(config),
        "BACKUP_DESTINATIONS": f"gs://{gcs_server.create_bucket()}/pg",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    target = unique_name("from_wif")
    restored = run_job("restore", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
    exchanges = recording_server.requests_to("/v1/token")
    assert exchanges
    form = urllib.parse.parse_qs(exchanges[0].text)
    assert form["subject_token"] == [subject] and form["audience"] == [audience]
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]
    [first, *_] = recording_server.requests_to(impersonate + ":generateAccessToken")
    headers = {name.lower(): value for name, value in first.headers.items()}
    assert headers.get("authorization") == "Bearer ya29.federated", headers
    assert subject not in result.output + restored.output


def test_no_google_credentials_is_exit_2_naming_the_variable(job_env, tmp_path):
    env = {
        **job_env,
        **_no_metadata(),
        "HOME": str(tmp_path),
        "BACKUP_DESTINATIONS": "gs://some-bucket/pg",
    }
    for command in ("backup", "check"):
        result = run_job(command, env=env)
        assert result.returncode == 2, result.output
        assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stderr
        assert "Workload Identity" in result.stderr
        assert "Traceback" not in result.output


def test_a_workload_identity_without_a_binding_is_exit_4_with_a_hint(
    job_env, tmp_path, gcs_server: GCSServer
):
    metadata = FakeMetadataServer(refuse=True)
    try:
        env = {
            **job_env,
            **metadata.env,
            "HOME": str(tmp_path),
            "GCS_ENDPOINT_URL": gcs_server.endpoint_url,
            "BACKUP_DESTINATIONS": f"gs://{gcs_server.create_bucket()}/pg",
            "BACKUP_RETRY_BACKOFF_SECONDS": "0.05",
        }
        result = run_job("backup", env=env)
    finally:
        metadata.close()
    assert result.returncode == 4, result.output
    assert "iam.gke.io/gcp-service-account" in result.stderr
    assert "roles/iam.workloadIdentityUser" in result.stderr
    assert "Traceback" not in result.output


def test_an_azure_account_without_an_identity_is_exit_4_with_a_hint(job_env, tmp_path):
    """AZURE_STORAGE_ACCOUNT alone: DefaultAzureCredential. Where no identity answers (the
    managed identity endpoint refused, no workload identity variables, no az CLI), the run
    stops before any byte is sent, naming what to set up."""
    env = {
        **job_env,
        "HOME": str(tmp_path),
        "BACKUP_DESTINATIONS": "az://backups/pg",
        "AZURE_STORAGE_ACCOUNT": "acmebackups",
        # https but closed: Azure's SDK sends tokens only over TLS; the token never comes.
        "AZURE_STORAGE_ENDPOINT": f"https://127.0.0.1:{_closed_port()}/acmebackups",
        # The managed identity endpoint (App Service's form) on a closed local port: nothing
        # leaves the machine for the instance metadata service.
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{_closed_port()}/msi/token",
        "IDENTITY_HEADER": "test",
        "BACKUP_RETRY_BACKOFF_SECONDS": "0.05",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 4, result.output
    assert "azure.workload.identity/client-id" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["backup", "check"])
def test_an_azure_destination_without_an_account_is_exit_2(job_env, command):
    result = run_job(command, env={**job_env, "BACKUP_DESTINATIONS": "az://backups/pg"})
    assert result.returncode == 2, result.output
    assert "AZURE_STORAGE_ACCOUNT is required" in result.stderr
    assert "Traceback" not in result.output


def test_a_key_json_in_the_variable_itself(
    job_env, gcs_server: GCSServer, tmp_path, recording_server: RecordingServer
):
    """GOOGLE_APPLICATION_CREDENTIALS holding the key's JSON (a platform without files): read,
    checked, used to sign the token request, and never printed."""
    recording_server.respond("/token", body={"access_token": "ya29.k", "expires_in": 3600})
    text = key_file(tmp_path, recording_server.url + "/token").read_text()
    private_line = json.loads(text)["private_key"].splitlines()[1]
    env = {
        **job_env,
        "GCS_ENDPOINT_URL": gcs_server.endpoint_url,
        "GOOGLE_APPLICATION_CREDENTIALS": text,
        "BACKUP_DESTINATIONS": f"gs://{gcs_server.create_bucket()}/pg",
        "LOG_LEVEL": "DEBUG",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert recording_server.requests_to("/token")
    assert private_line not in result.output


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("gs://", "has no bucket name"),
        ("gs:///pg", "has no bucket name"),
        ("az://Backups/pg", "invalid container name 'Backups'"),
        ("az://ab/pg", "invalid container name 'ab'"),
        ("azure://db--backups/pg", "invalid container name"),
    ],
)
def test_a_cloud_url_the_cloud_would_refuse_is_exit_2(job_env, destination, expected):
    """Refused before anything runs: no server is asked, no credential looked for."""
    env = {
        **job_env,
        "BACKUP_DESTINATIONS": destination,
        "AZURE_STORAGE_ACCOUNT": "acmebackups",
        "PGPORT": str(_closed_port()),  # a run that went further would fail with exit 3
    }
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    assert "BACKUP_DESTINATIONS" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.output


def test_an_azure_managed_identity_backs_up_and_restores(
    pg15, sample_db, job_env, tmp_path, azurite_tls: TLSAzurite
):
    """AZURE_STORAGE_ACCOUNT alone: DefaultAzureCredential gets a token from the managed
    identity endpoint, and Azurite (over TLS, checking bearer tokens) takes the backup."""
    identity = FakeManagedIdentity()
    try:
        env = {
            **job_env,
            **identity.env,
            **_identity_destination(azurite_tls, tmp_path),
        }
        result = run_job("backup", env=env)
        assert result.returncode == 0, result.output
        assert identity.tokens >= 1
        target = unique_name("from_mi")
        restored = run_job("restore", "--target-db", target, "--force", env=env)
        assert restored.returncode == 0, restored.output
        assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
    finally:
        identity.close()


def test_aks_workload_identity_backs_up_and_restores(
    pg15, sample_db, job_env, tmp_path, azurite_tls: TLSAzurite
):
    """AKS workload identity, as its webhook sets the pod up: AZURE_CLIENT_ID, AZURE_TENANT_ID
    and AZURE_FEDERATED_TOKEN_FILE (the projected service account token). DefaultAzureCredential
    exchanges that token at AZURE_AUTHORITY_HOST's token endpoint for an access token, which
    Azurite (over TLS, checking bearer tokens) accepts; the token is never printed."""
    tenant, client_id = (
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "5f2b7a3c-0c2d-4a55-9d1e-3b1f0e6a7c11",
    )
    assertion = "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.c2ln"
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(assertion)
    entra = FakeEntraTokenEndpoint(azurite_tls.cert, azurite_tls.key, tenant, client_id, assertion)
    try:
        env = {
            **job_env,
            **_identity_destination(azurite_tls, tmp_path),
            "AZURE_CLIENT_ID": client_id,
            "AZURE_TENANT_ID": tenant,
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "AZURE_AUTHORITY_HOST": entra.authority,
            # No managed identity to fall back on: only the federated token can give a token.
            "IDENTITY_ENDPOINT": f"http://127.0.0.1:{_closed_port()}/msi/token",
            "IDENTITY_HEADER": "test",
        }
        result = run_job("backup", env=env)
        assert result.returncode == 0, result.output
        target = unique_name("from_aks_wi")
        restored = run_job("restore", "--target-db", target, "--force", env=env)
        assert restored.returncode == 0, restored.output
        assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
    finally:
        entra.close()
    assert entra.requests, "the federated token was never exchanged"
    assert all(r["client_assertion"] == assertion for r in entra.requests)
    assert assertion not in result.output + restored.output


def _identity_destination(azurite_tls: TLSAzurite, tmp_path) -> dict[str, str]:
    """An az:// destination on the TLS Azurite named by its account alone (an identity's)."""
    return {
        "HOME": str(tmp_path),  # no Azure CLI login to find
        "REQUESTS_CA_BUNDLE": str(azurite_tls.cert),  # trust the local servers' certificate
        "BACKUP_DESTINATIONS": f"az://{azurite_tls.create_container()}/pg",
        "AZURE_STORAGE_ACCOUNT": azurite_tls.server.account,
        "AZURE_STORAGE_ENDPOINT": azurite_tls.server.endpoint_url,
    }


IDENTITY_PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("IDENTITY", "azure.identity" in sys.modules, "msal" in sys.modules,
                              file=sys.stderr))
sys.argv = ["entrypoint.py", "list"]
runpy.run_path("entrypoint.py", run_name="__main__")
"""


def test_azure_identity_is_imported_only_for_an_identity(job_env, azurite):
    """A key, a SAS or a connection string never loads azure-identity (nor msal)."""
    import subprocess
    import sys

    from tests.conftest import REPO, clean_environ

    env = {
        **clean_environ(),
        **job_env,
        "BACKUP_DESTINATIONS": f"az://{azurite.create_container()}/pg",
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
    }
    result = subprocess.run(
        [sys.executable, "-c", IDENTITY_PROBE],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "IDENTITY False False" in result.stderr, result.stderr
