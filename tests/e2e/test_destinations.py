"""Several destinations from one dump: a real S3 server (SeaweedFS) and a local directory."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests
from tests.fixtures import faulty_proxy as proxy_fixtures
from tests.fixtures.compare import fingerprint_db

faulty_proxy_factory = proxy_fixtures.faulty_proxy_factory


def _s3_env(server, bucket: str, endpoint: str | None = None) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": server.region,
        "S3_ENDPOINT_URL": endpoint or server.endpoint_url,
        "BACKUP_RETRY_BACKOFF_SECONDS": "0.05",
    }


def _s3_keys(server, bucket: str, prefix: str = "") -> list[str]:
    paginator = server.client().get_paginator("list_objects_v2")
    return [
        o["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]


def test_backup_to_s3_and_local_then_restore_from_s3(
    pg15, sample_db, job_env, backup_dir, s3_server
):
    bucket = s3_server.create_bucket()
    s3_url = f"s3://{bucket}/nightly/pg"
    env = {
        **job_env,
        **_s3_env(s3_server, bucket),
        "BACKUP_DESTINATIONS": f"{s3_url},file://{backup_dir}",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    keys = _s3_keys(s3_server, bucket)
    assert any(k.startswith(f"nightly/pg/{sample_db}/") and k.endswith(".dump.zst") for k in keys)
    assert any(k.endswith(".manifest.json") for k in keys)
    assert len(manifests(backup_dir)) == 1

    listing = json.loads(run_job("list", "--json", "--destination", s3_url, env=env).stdout)
    assert [e["destination"] for e in listing] == [s3_url]
    target = unique_name("from_s3")
    restored = run_job(
        "restore", "--destination", s3_url, "--target-db", target, "--force", env=env
    )
    assert restored.returncode == 0, restored.output
    assert s3_url in restored.stderr
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_wrong_s3_secret_is_exit_4_and_never_printed(job_env, s3_server):
    bucket = s3_server.create_bucket()
    env = {
        **job_env,
        **_s3_env(s3_server, bucket),
        "AWS_SECRET_ACCESS_KEY": "wrong-Secret-Key-987654321",
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 4, result.output
    assert "AWS_SECRET_ACCESS_KEY" in result.stderr
    assert "wrong-Secret-Key-987654321" not in result.output
    assert _s3_keys(s3_server, bucket) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_one_destination_down_is_exit_6_and_the_other_committed(job_env, backup_dir, s3_server):
    bucket = s3_server.create_bucket()
    env = {
        **job_env,
        **_s3_env(s3_server, bucket, f"http://127.0.0.1:{_closed_port()}"),
        "BACKUP_RETRY_ATTEMPTS": "2",
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg,file://{backup_dir}",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 6, result.output
    assert f"s3://{bucket}/pg" in result.stderr
    assert len(manifests(backup_dir)) == 1  # the good destination is committed
    listing = run_job("list", "--json", "--destination", f"file://{backup_dir}", env=env)
    assert len(json.loads(listing.stdout)) == 1


def test_all_destinations_down_is_exit_4(job_env, tmp_path, s3_server):
    bucket = s3_server.create_bucket()
    env = {
        **job_env,
        **_s3_env(s3_server, bucket, f"http://127.0.0.1:{_closed_port()}"),
        "BACKUP_RETRY_ATTEMPTS": "2",
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 4, result.output


@pytest.fixture(scope="module")
def incompressible_db(pg15):
    name = unique_name("random")
    pg15.create_database(name)
    pg15.execute(
        name,
        "CREATE TABLE r AS SELECT g, md5(random()::text) || md5(random()::text) "
        "AS v FROM generate_series(1, 250000) g",
    )
    return name


def test_failed_part_uploads_are_retried(
    pg15, incompressible_db, job_env, s3_server, faulty_proxy_factory
):
    bucket = s3_server.create_bucket()
    proxy = faulty_proxy_factory(s3_server.endpoint_url, fail_parts=2)
    env = {
        **job_env,
        **_s3_env(s3_server, bucket, proxy.url),
        "PGDATABASE": incompressible_db,
        "BACKUP_COMPRESSION": "none",
        "BACKUP_PART_SIZE_MB": "5",
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert proxy.failed == 2 and proxy.part_uploads >= 4
    target = unique_name("retried")
    restored = run_job("restore", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, incompressible_db)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_download_cut_twice_mid_restore_resumes(
    pg15, incompressible_db, job_env, s3_server, faulty_proxy_factory, jobs
):
    """The connection drops twice in the middle of the object while the restore streams (read
    ahead by a thread) or spools (--jobs): the download resumes where it stopped and the
    database comes back whole."""
    bucket = s3_server.create_bucket()
    direct = {**job_env, **_s3_env(s3_server, bucket), "PGDATABASE": incompressible_db}
    direct["BACKUP_DESTINATIONS"] = f"s3://{bucket}/pg"
    assert run_job("backup", env=direct).returncode == 0
    proxy = faulty_proxy_factory(s3_server.endpoint_url, cut_downloads=2)
    env = {**direct, **_s3_env(s3_server, bucket, proxy.url)}
    target = unique_name("resumed")
    result = run_job("restore", "--target-db", target, "--force", "--jobs", jobs, env=env)
    assert result.returncode == 0, result.output
    assert proxy.cut == 2
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, incompressible_db)


def test_restore_falls_back_to_the_next_destination(
    pg15, sample_db, job_env, backup_dir, s3_server
):
    bucket = s3_server.create_bucket()
    s3_url = f"s3://{bucket}/pg"
    env = {
        **job_env,
        **_s3_env(s3_server, bucket),
        "BACKUP_DESTINATIONS": f"{s3_url},file://{backup_dir}",
    }
    assert run_job("backup", env=env).returncode == 0
    name = manifests(backup_dir)[0]["name"]
    # The S3 copy disappears (its manifest stays): restore must say so and use the local copy.
    dump_key = next(k for k in _s3_keys(s3_server, bucket) if k.endswith(".dump.zst"))
    s3_server.client().delete_object(Bucket=bucket, Key=dump_key)
    target = unique_name("fallback")
    result = run_job("restore", name, "--target-db", target, "--force", env=env)
    assert result.returncode == 0, result.output
    assert "falling back to file://" in result.stderr
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_latest_is_right_past_1000_objects(pg15, sample_db, job_env, s3_server):
    bucket = s3_server.create_bucket()
    env = {**job_env, **_s3_env(s3_server, bucket), "BACKUP_DESTINATIONS": f"s3://{bucket}/pg"}
    assert run_job("backup", env=env).returncode == 0
    client = s3_server.client()
    [manifest_key] = [k for k in _s3_keys(s3_server, bucket) if k.endswith(".manifest.json")]
    real = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())

    # 1,100 older backups (manifests sorting before the real one) under the same prefix.
    def put_old(day: int) -> None:
        stamp = f"2020{1 + day // 100 % 12:02d}{1 + day % 28:02d}T{day % 24:02d}0000Z"
        name = f"{sample_db}-{stamp}-{day}"
        old = {**real, "name": name, "created_at": f"2020-01-01T00:00:{day % 60:02d}Z"}
        client.put_object(
            Bucket=bucket, Key=f"pg/{sample_db}/{name}.manifest.json", Body=json.dumps(old).encode()
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put_old, range(1100)))
    assert len(_s3_keys(s3_server, bucket)) > 1100
    listing = json.loads(run_job("list", "--json", env=env).stdout)
    assert len(listing) == 1101
    assert listing[0]["name"] == real["name"]
    target = unique_name("latest")
    restored = run_job("restore", "latest", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert real["name"] in restored.stderr


def test_list_uses_the_first_destination_that_answers(job_env, backup_dir, s3_server):
    bucket = s3_server.create_bucket()
    good = {
        **job_env,
        **_s3_env(s3_server, bucket),
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg,file://{backup_dir}",
    }
    assert run_job("backup", env=good).returncode == 0
    down = {
        **good,
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
        "BACKUP_RETRY_ATTEMPTS": "1",
    }
    listing = run_job("list", "--json", env=down)
    assert listing.returncode == 0, listing.output
    [entry] = json.loads(listing.stdout)
    assert entry["destination"] == f"file://{backup_dir}"
    assert "trying the next destination" in listing.stderr
    # The table's storage lines: the S3 bucket's bytes as SeaweedFS lists them; once down, the
    # line says so (from the failure already met: not listed a second time).
    table = run_job("list", env=good)
    assert table.returncode == 0, table.output
    s3_line = next(
        line for line in table.stdout.splitlines() if line.startswith(f"  s3://{bucket}")
    )
    assert "1 backup" in s3_line and "/month" in s3_line and " 0.00 MB" not in s3_line
    down_table = run_job("list", env=down)
    assert down_table.returncode == 0, down_table.output
    [down_line] = [line for line in down_table.stdout.splitlines() if "cannot be listed" in line]
    assert down_line.startswith(f"  s3://{bucket}/pg")
    assert down_table.stderr.count("trying the next destination") == 1
    assert "to measure it" not in down_table.stderr
