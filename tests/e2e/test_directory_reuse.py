"""Issue 15: nothing is reused on faith. A directory-format backup reuses a stored object only
when the listing shows it as the manifest recorded it (size and fingerprint); a byte flipped in
the bucket (the object written again, same size) is read back, found damaged, stored anew, and
the new backup restores identical while the old one still fails verify (exit 5)."""

from __future__ import annotations

import hashlib
import json
import os
import time

from backup.manifest import files_digest
from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests
from tests.e2e.test_destinations import _s3_env
from tests.e2e.test_directory_format import DIR_ENV, newest, restore_into
from tests.e2e.test_directory_safety import _manifest_path, _objects
from tests.fixtures.compare import fingerprint_db


def _flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    return bytes(flipped)


def _largest_data_file(record: dict) -> dict:
    return max(
        (f for f in record["files"] if f["name"] != "toc.dat"), key=lambda f: f["size_bytes"]
    )


def test_a_flipped_byte_is_not_reused_by_the_next_backup(pg15, sample_db, job_env, backup_dir):
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    first = newest(backup_dir)
    assert all(f["fingerprint"] for f in first["files"])
    victim = _largest_data_file(first)
    path = backup_dir / victim["key"]
    path.write_bytes(_flip(path.read_bytes()))  # same size, same name, other bytes

    time.sleep(1.1)  # a backup's name has the second it started
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "is damaged" in result.stderr and victim["key"] in result.stderr
    second = newest(backup_dir)
    [again] = [f for f in second["files"] if f["name"] == victim["name"]]
    assert again["key"] == victim["key"] and again["new"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == again["sha256"]  # stored anew
    # the others were reused as they were: nothing else read or uploaded
    assert sum(f["new"] for f in second["files"]) == 2  # the victim and the TOC

    assert run_job("verify", env=env).returncode == 0
    target = unique_name("reuse_heal")
    restored = restore_into(env, target)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_an_object_rewritten_with_the_mtime_put_back_is_still_caught(
    sample_db, job_env, backup_dir
):
    """A rewrite that restores the modification time (cp -p, rsync -t) changes the ctime."""
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    victim = _largest_data_file(newest(backup_dir))
    path = backup_dir / victim["key"]
    stat = path.stat()
    path.write_bytes(_flip(path.read_bytes()))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    time.sleep(1.1)
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    [again] = [f for f in newest(backup_dir)["files"] if f["name"] == victim["name"]]
    assert again["new"] and hashlib.sha256(path.read_bytes()).hexdigest() == again["sha256"]
    assert run_job("verify", env=env).returncode == 0


def test_an_older_manifest_without_fingerprints_is_read_back_not_trusted(
    sample_db, job_env, backup_dir
):
    """A manifest an older job wrote records no fingerprint: its objects are read back once
    (whole ones reused, with the fingerprint recorded from then on), a damaged one stored anew."""
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    first = newest(backup_dir)
    files = [{k: v for k, v in f.items() if k != "fingerprint"} for f in first["files"]]
    data = {**first, "files": files, "sha256": files_digest(files)}
    _manifest_path(backup_dir, first).write_text(json.dumps(data))
    victim = _largest_data_file(first)
    path = backup_dir / victim["key"]
    path.write_bytes(_flip(path.read_bytes()))

    time.sleep(1.1)
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    second = newest(backup_dir)
    new = {f["name"] for f in second["files"] if f["new"]}
    assert new == {victim["name"], "toc.dat"}, new
    assert all(f["fingerprint"] for f in second["files"])
    assert run_job("verify", env=env).returncode == 0


def test_on_s3_an_object_put_again_is_not_reused(pg15, sample_db, job_env, backup_dir, s3_server):
    bucket = s3_server.create_bucket()
    env = {
        **job_env,
        **DIR_ENV,
        **_s3_env(s3_server, bucket),
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
    }
    assert run_job("backup", env=env).returncode == 0, "first backup"
    listed = json.loads(run_job("list", "--json", env=env).stdout)
    assert len(listed) == 1
    client = s3_server.client()
    objects = [
        o
        for o in client.list_objects_v2(Bucket=bucket, Prefix=f"pg/{sample_db}/_objects/")[
            "Contents"
        ]
    ]
    victim = max(objects, key=lambda o: o["Size"])
    body = client.get_object(Bucket=bucket, Key=victim["Key"])["Body"].read()
    client.put_object(Bucket=bucket, Key=victim["Key"], Body=_flip(body))

    time.sleep(1.1)
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "is damaged" in result.stderr
    assert run_job("verify", env=env).returncode == 0
    target = unique_name("reuse_s3")
    restored = restore_into(env, target)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_whole_objects_are_reused_without_a_read(sample_db, job_env, backup_dir):
    """The common case stays cheap: an unchanged database stores only its TOC again."""
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    time.sleep(1.1)
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    second = newest(backup_dir)
    assert [f["name"] for f in second["files"] if f["new"]] in (["toc.dat"], [])
    assert "is damaged" not in result.stderr
    assert len(manifests(backup_dir)) == 2
    assert len(_objects(backup_dir, sample_db)) >= len(second["files"]) - 1
