"""The network between the job and gs:// or az:// failing: the fault proxy
(tests/fixtures/faulty_proxy.py) in front of gcp-storage-emulator and Azurite answers 503 to
part uploads and cuts connections after the store kept the part; the backup still succeeds and
restores identical, as the S3 fault test does (test_destinations.py). A 403 of the cloud's own
shape stops the run with exit 4 and names the permission or role."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_job, unique_name
from tests.fixtures import faulty_proxy as proxy_fixtures
from tests.fixtures.clouds import AzuriteServer, GCSServer
from tests.fixtures.compare import fingerprint_db
from tests.fixtures.faulty_proxy import Denial, azure_block, gcs_chunk

faulty_proxy_factory = proxy_fixtures.faulty_proxy_factory
FAULTS = ["503", "cut"] * 3  # six faults: three refused parts, three lost answers


@pytest.fixture(scope="module")
def incompressible_db(pg15):
    """About 20 MB of pg_dump output that compression cannot shrink: several 5 MiB parts."""
    name = unique_name("random")
    pg15.create_database(name)
    pg15.execute(
        name,
        "CREATE TABLE r AS SELECT g, md5(random()::text) || md5(random()::text) "
        "AS v FROM generate_series(1, 250000) g",
    )
    return name


def _gcs(server: GCSServer, endpoint: str) -> tuple[str, dict[str, str]]:
    return f"gs://{server.create_bucket()}/pg", {"STORAGE_EMULATOR_HOST": endpoint}


def _azure(server: AzuriteServer, endpoint: str) -> tuple[str, dict[str, str]]:
    container = server.create_container()
    env = {
        "AZURE_STORAGE_ACCOUNT": server.account,
        "AZURE_STORAGE_KEY": server.key,
        "AZURE_STORAGE_ENDPOINT": f"{endpoint}/{server.account}",
    }
    return f"az://{container}/pg", env


@pytest.mark.parametrize("cloud", ["gs", "az"])
def test_six_injected_faults_then_an_identical_restore(
    pg15, incompressible_db, job_env, gcs_server, azurite, faulty_proxy_factory, cloud
):
    if cloud == "gs":
        upstream, is_part = gcs_server.endpoint_url, gcs_chunk
    else:
        upstream, is_part = azurite.endpoint_url.rsplit("/", 1)[0], azure_block
    proxy = faulty_proxy_factory(upstream, cut_downloads=2, faults=FAULTS, is_part=is_part)
    url, env = _gcs(gcs_server, proxy.url) if cloud == "gs" else _azure(azurite, proxy.url)
    env = {
        **job_env,
        **env,
        "PGDATABASE": incompressible_db,
        "BACKUP_DESTINATIONS": url,
        "BACKUP_COMPRESSION": "none",
        "BACKUP_PART_SIZE_MB": "5",
        "BACKUP_RETRY_BACKOFF_SECONDS": "0.05",
        # a part may meet several of the faults in a row
        "BACKUP_RETRY_ATTEMPTS": "8",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert proxy.injected == FAULTS
    # at least 4 parts of 5 MiB, and each part refused with a 503 sent again (a part whose
    # answer was cut is sent again to Azure; GCS says it has it, and the upload goes on)
    assert proxy.part_uploads >= 4 + FAULTS.count("503")
    listing = json.loads(run_job("list", "--json", env=env).stdout)
    assert [e["database"] for e in listing] == [incompressible_db]

    target = unique_name(f"faults_{cloud}")
    restored = run_job("restore", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert proxy.cut == 2  # the download was cut twice too, and resumed
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, incompressible_db)


GCS_FORBIDDEN = Denial(
    when=lambda method, path, headers: method in ("POST", "PUT"),
    body=json.dumps(
        {
            "error": {
                "code": 403,
                "message": "pgbackup@p.iam.gserviceaccount.com does not have "
                "storage.objects.create access to the Google Cloud Storage object.",
                "errors": [{"reason": "forbidden", "domain": "global"}],
            }
        }
    ).encode(),
    headers={"Content-Type": "application/json; charset=UTF-8"},
)
AZURE_FORBIDDEN = Denial(
    when=lambda method, path, headers: method == "PUT",
    body=b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch'
    b"</Code><Message>This request is not authorized to perform this operation using this "
    b"permission.</Message></Error>",
    headers={
        "Content-Type": "application/xml",
        "x-ms-error-code": "AuthorizationPermissionMismatch",
    },
)


@pytest.mark.parametrize(
    ("cloud", "expected"),
    [("gs", "lack storage.objects.create"), ("az", "Storage Blob Data Contributor")],
)
def test_a_403_is_exit_4_naming_the_permission(
    job_env, gcs_server, azurite, faulty_proxy_factory, cloud, expected
):
    """The grant lets the job list but not write (a role without create): exit 4, the
    hint names what is missing, nothing is retried in vain."""
    if cloud == "gs":
        proxy = faulty_proxy_factory(gcs_server.endpoint_url, deny=GCS_FORBIDDEN)
        url, env = _gcs(gcs_server, proxy.url)
    else:
        upstream = azurite.endpoint_url.rsplit("/", 1)[0]
        proxy = faulty_proxy_factory(upstream, deny=AZURE_FORBIDDEN)
        url, env = _azure(azurite, proxy.url)
    env = {**job_env, **env, "BACKUP_DESTINATIONS": url, "BACKUP_RETRY_BACKOFF_SECONDS": "0.05"}
    result = run_job("backup", env=env)
    assert result.returncode == 4, result.output
    assert "403" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert 1 <= proxy.denied <= 3  # permanent: not retried attempt after attempt
