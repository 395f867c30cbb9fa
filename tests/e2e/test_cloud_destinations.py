"""gs:// and azure:// end to end: a real PostgreSQL database backed up to gcp-storage-emulator
and Azurite in one run, checked, restored from one and verified from the other; bad
credentials stop the job with the right exit code and never a traceback."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import run_job, unique_name
from tests.fixtures.clouds import AzuriteServer, GCSServer
from tests.fixtures.compare import fingerprint_db


def cloud_env(gcs: GCSServer, azurite: AzuriteServer) -> dict[str, str]:
    return {
        "STORAGE_EMULATOR_HOST": gcs.endpoint_url,
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "BACKUP_RETRY_BACKOFF_SECONDS": "0.05",
        # The smallest part size the configuration takes.
        "BACKUP_PART_SIZE_MB": "5",
    }


def test_backup_to_gcs_and_azure_then_restore_and_verify(
    pg15, sample_db, job_env, gcs_server, azurite
):
    gs_url = f"gs://{gcs_server.create_bucket()}/nightly/pg"
    az_url = f"azure://{azurite.create_container()}/nightly/pg"
    env = {
        **job_env,
        **cloud_env(gcs_server, azurite),
        "BACKUP_DESTINATIONS": f"{gs_url},{az_url}",
        # age loads cryptography after azure-storage-blob was imported without it
        # (storage/azure/library.py): both must work in one run.
        "BACKUP_AGE_PASSPHRASE": "correct horse battery staple",
    }
    checked = run_job("check", env=env)
    assert checked.returncode == 0, checked.output
    assert gs_url in checked.output and az_url in checked.output

    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert azurite.key not in result.output

    for url in (gs_url, az_url):
        listing = json.loads(run_job("list", "--json", "--destination", url, env=env).stdout)
        assert [e["destination"] for e in listing] == [url]
        assert [e["database"] for e in listing] == [sample_db]

    target = unique_name("from_gcs")
    restored = run_job(
        "restore", "--destination", gs_url, "--target-db", target, "--force", env=env
    )
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)

    verified = run_job("verify", "--destination", az_url, env=env)
    assert verified.returncode == 0, verified.output


def test_az_scheme_is_azure(job_env, gcs_server, azurite):
    url = f"az://{azurite.create_container()}/pg"
    env = {**job_env, **cloud_env(gcs_server, azurite), "BACKUP_DESTINATIONS": url}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    verified = run_job("verify", "--destination", url, env=env)
    assert verified.returncode == 0, verified.output


def test_a_bad_key_file_is_exit_2_naming_the_variable(job_env, tmp_path: Path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "authorized_user", "refresh_token": "secret-refresh-token"}')
    env = {
        **job_env,
        "BACKUP_DESTINATIONS": "gs://some-bucket/pg",
        "GOOGLE_APPLICATION_CREDENTIALS": str(key),
    }
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stderr
    assert "service_account" in result.stderr
    assert "Traceback" not in result.output
    assert "secret-refresh-token" not in result.output


def test_an_azure_key_without_its_account_is_exit_2(job_env):
    env = {
        **job_env,
        "BACKUP_DESTINATIONS": "azure://backups/pg",
        "AZURE_STORAGE_KEY": "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 2, result.output
    assert "AZURE_STORAGE_ACCOUNT is required" in result.stderr
    assert "Traceback" not in result.output


def test_a_wrong_azure_key_is_exit_4_and_never_printed(job_env, gcs_server, azurite):
    container = azurite.create_container()
    wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    env = {
        **job_env,
        "BACKUP_DESTINATIONS": f"azure://{container}/pg",
        "AZURE_STORAGE_ACCOUNT": azurite.account,
        "AZURE_STORAGE_KEY": wrong,
        "AZURE_STORAGE_ENDPOINT": azurite.endpoint_url,
        "BACKUP_RETRY_BACKOFF_SECONDS": "0.05",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 4, result.output
    assert "AZURE_STORAGE_KEY" in result.stderr
    assert wrong not in result.output
    assert "Traceback" not in result.output


def test_a_missing_bucket_is_exit_4_naming_it(job_env, gcs_server, azurite):
    env = {
        **job_env,
        **cloud_env(gcs_server, azurite),
        "BACKUP_DESTINATIONS": "gs://no-such-bucket-here/pg",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 4, result.output
    assert "no-such-bucket-here" in result.stderr
    assert "Traceback" not in result.output


def test_a_sas_token_never_reaches_the_log_even_at_debug(job_env, azurite):
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = azurite.create_container()
    sas = generate_container_sas(
        azurite.account,
        container,
        account_key=azurite.key,
        permission=ContainerSasPermissions(
            read=True, add=True, create=True, write=True, delete=True, list=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    env = {
        **job_env,
        "BACKUP_DESTINATIONS": f"azure://{container}/pg",
        "AZURE_STORAGE_ACCOUNT": azurite.account,
        "AZURE_STORAGE_SAS_TOKEN": sas,
        "AZURE_STORAGE_ENDPOINT": azurite.endpoint_url,
        "LOG_LEVEL": "DEBUG",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert signature not in result.output
    assert sas not in result.output


def _cloud(cloud: str, gcs: GCSServer, azurite: AzuriteServer) -> str:
    if cloud == "gs":
        return f"gs://{gcs.create_bucket()}/nightly/pg"
    return f"az://{azurite.create_container()}/nightly/pg"


def _plant_an_old_copy(env: dict[str, str], url: str, database: str) -> str:
    """The directory-format backup's manifest again, as if made 40 days ago (its files are
    content objects of its database: the copy is believed); written through the job's own
    backend. Returns its name."""
    from backup import storage
    from backup.config import load
    from backup.manifest.scheme import TIMESTAMP_FORMAT

    [store] = storage.open_all(load(env).storage, only=url)
    [key] = [o.key for o in store.list(f"{database}/") if o.key.endswith(".manifest.json")]
    with store.open(key) as stream:
        record = json.loads(stream.read())
    old = datetime.now(UTC) - timedelta(days=40)
    name = f"{database}-{old.strftime(TIMESTAMP_FORMAT)}"
    iso = old.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    planted = {**record, "name": name, "created_at": iso, "finished_at": iso}
    store.put(f"{database}/{name}.manifest.json", io.BytesIO(json.dumps(planted).encode()))
    return name


@pytest.mark.parametrize("cloud", ["gs", "az"])
def test_directory_format_to_a_cloud_and_s3_at_once(
    pg15, sample_db, job_env, tmp_path, gcs_server, azurite, s3_server, cloud
):
    """BACKUP_FORMAT=directory to gs:// (or az://) and s3:// in one run: both committed;
    retention deletes an old backup on the cloud; check's probe, verify, restore, list's cost
    lines at the cloud's own price and the metrics' destination labels."""
    url = _cloud(cloud, gcs_server, azurite)
    s3_url = f"s3://{s3_server.create_bucket()}/pg"
    env = {
        **job_env,
        **cloud_env(gcs_server, azurite),
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "BACKUP_DESTINATIONS": f"{url},{s3_url}",
        "BACKUP_FORMAT": "directory",
        "BACKUP_KEEP_MIN": "1",
        "METRICS_FILE": str(tmp_path / "pgbackup.prom"),
        "STORAGE_PRICE_PER_GB_MONTH": "gs=0.020,az=0.018,s3=0.023,file=0",
    }
    checked = run_job("check", env=env)
    assert checked.returncode == 0, checked.output
    assert f"destination {url}: write, read back, delete ok" in checked.stdout
    assert f"destination {s3_url}: write, read back, delete ok" in checked.stdout

    assert run_job("backup", env=env).returncode == 0
    planted = _plant_an_old_copy(env, url, sample_db)
    second = run_job("backup", env=env)
    assert second.returncode == 0, second.output
    assert f"retention on {url}: " in second.stderr and "1 deleted" in second.stderr

    for where in (url, s3_url):
        listing = json.loads(run_job("list", "--json", "--destination", where, env=env).stdout)
        assert len(listing) == 2 and planted not in [e["name"] for e in listing]
        assert {e["format"] for e in listing} == {"directory"}

    from backup import storage
    from backup.config import load

    [store] = storage.open_all(load(env).storage, only=url)
    assert not [o.key for o in store.list("_state/") if o.key.endswith(".probe")]

    verified = run_job("verify", "--destination", url, env=env)
    assert verified.returncode == 0, verified.output
    target = unique_name(f"dir_{cloud}")
    restored = run_job("restore", "--destination", url, "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)

    table = run_job("list", env=env)
    assert table.returncode == 0, table.output
    price = "$0.02" if cloud == "gs" else "$0.018"
    assert f"Estimated per GB-month at {price} for {cloud}://, $0.023 for s3://" in table.stdout
    [cloud_row] = [line for line in table.stdout.splitlines() if line.startswith(f"  {url} ")]
    assert "/month" in cloud_row

    metrics = (tmp_path / "pgbackup.prom").read_text()
    assert f'destination="{url}"' in metrics and f'destination="{s3_url}"' in metrics
