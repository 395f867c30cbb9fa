"""Issue 19 items 4 and 3: a damaged or missing object of a directory-format backup is named
(its key, pg_dump's file, the table it holds), exit 5 for both; a missing one says which other
backups name it; ``verify`` records the damage and the next backup stores the object anew,
healing the older backups that name it; on a local and an S3 destination."""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from backup import storage
from backup.config import load
from backup.manifest import files_digest
from backup.storage import Storage
from tests.conftest import clean_environ, run_job, unique_name
from tests.e2e.test_destinations import _s3_env
from tests.e2e.test_directory_format import DEDUP_KEY, DIR_ENV, newest, restore_into
from tests.e2e.test_encryption import keys  # noqa: F401 (a fixture)
from tests.fixtures.compare import fingerprint_db

NAMED = re.compile(r"the object (\S+) \((\d+\.dat): TABLE DATA (\S+) (\S+)\) is damaged")


def _largest(record: dict) -> dict:
    return max(
        (f for f in record["files"] if f["name"].endswith(".dat") and f["name"] != "toc.dat"),
        key=lambda f: f["size_bytes"],
    )


def _flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    return bytes(flipped)


def test_a_flipped_byte_is_named_by_verify_and_restore(pg15, sample_db, job_env, backup_dir):
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    record = newest(backup_dir)
    victim = _largest(record)
    path = backup_dir / victim["key"]
    path.write_bytes(_flip(path.read_bytes()))

    verified = run_job("verify", env=env)
    assert verified.returncode == 5, verified.output
    match = NAMED.search(verified.stderr)
    assert match, verified.stderr
    assert match[1] == victim["key"] and match[2] == victim["name"]
    assert (match[3], match[4]) == ("shop", "orders_2024"), match[0]  # the largest table
    assert "key is wrong" not in verified.stderr  # not encrypted: only the object is suspect

    target = unique_name("named_damage")
    restored = restore_into(env, target)
    assert restored.returncode == 5, restored.output
    match = NAMED.search(restored.stderr)
    assert match and match[1] == victim["key"] and match[2] == victim["name"], restored.stderr
    assert "key is wrong" not in restored.stderr


def test_an_encrypted_backup_says_the_key_may_be_wrong(
    sample_db,
    job_env,
    backup_dir,
    keys,  # noqa: F811
):
    env = {
        **job_env,
        **DIR_ENV,
        "BACKUP_AGE_RECIPIENTS": keys["public"],
        "BACKUP_DEDUP_KEY": DEDUP_KEY,
        "BACKUP_AGE_IDENTITY_FILE": str(keys["key"]),
    }
    assert run_job("backup", env=env).returncode == 0
    victim = _largest(newest(backup_dir))
    path = backup_dir / victim["key"]
    path.write_bytes(_flip(path.read_bytes()))
    verified = run_job("verify", env=env)
    assert verified.returncode == 5, verified.output
    assert victim["key"] in verified.stderr and victim["name"] in verified.stderr
    assert "key is wrong" in verified.stderr


def test_a_missing_object_is_exit_5_naming_the_other_backups(sample_db, job_env, backup_dir):
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    first = newest(backup_dir)
    time.sleep(1.1)  # a backup's name has the second it started
    assert run_job("backup", env=env).returncode == 0
    second = newest(backup_dir)
    victim = _largest(second)
    assert victim["key"] in {f["key"] for f in first["files"]}  # shared by both
    (backup_dir / victim["key"]).unlink()

    verified = run_job("verify", env=env)
    assert verified.returncode == 5, verified.output
    assert f"the object {victim['key']} ({victim['name']}: TABLE DATA" in verified.stderr
    assert "is missing" in verified.stderr
    hint = next(line for line in verified.stderr.splitlines() if line.startswith("hint:"))
    assert first["name"] in hint and second["name"] not in hint, hint
    assert "run 'list'" not in verified.stderr


def _destination(env: dict[str, str]) -> Storage:
    [store] = storage.open_all(load({**clean_environ(), **env}).storage)
    return store


def _rot_unseen(store: Storage, record: dict, victim: dict) -> None:
    """A byte of ``victim``'s object flipped where the listing cannot see it (bit rot under the
    store): the object is rewritten, then the manifest made to record the listing's new
    fingerprint, as if the damage had happened without any write."""
    with store.open(victim["key"]) as stream:
        data = stream.read()
    store.put(victim["key"], io.BytesIO(_flip(data)))
    [info] = [o for o in store.list(victim["key"]) if o.key == victim["key"]]
    key = f"{record['database']}/{record['name']}.manifest.json"
    files = [
        {**f, "fingerprint": info.fingerprint} if f["key"] == victim["key"] else f
        for f in record["files"]
    ]
    changed = {**record, "files": files, "sha256": files_digest(files)}
    store.put(key, io.BytesIO(json.dumps(changed).encode()))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_what_verify_found_damaged_is_stored_anew_and_heals_older_backups(
    pg15, sample_db, job_env, backup_dir, s3_server, where
):
    """Item 3: damage the listing cannot show (the recorded fingerprint still matches) is
    found by verify, recorded; the next backup does not reuse the object but stores it anew
    at the same address, so the older backup verifies and restores again; the record goes."""
    env = {**job_env, **DIR_ENV}
    if where == "s3":
        bucket = s3_server.create_bucket()
        env.update(_s3_env(s3_server, bucket), BACKUP_DESTINATIONS=f"s3://{bucket}/pg")
    assert run_job("backup", env=env).returncode == 0
    store = _destination(env)
    [first] = json.loads(run_job("list", "--json", env=env).stdout)
    with store.open(f"{sample_db}/{first['name']}.manifest.json") as stream:
        record = json.loads(stream.read())
    victim = _largest(record)
    _rot_unseen(store, record, victim)

    found = run_job("verify", env=env)
    assert found.returncode == 5, found.output
    assert victim["key"] in found.stderr and "recorded" in found.stderr
    marker = f"{sample_db}/_state/damaged/{victim['key'].rsplit('/', 1)[1]}"
    assert [o.key for o in store.list(f"{sample_db}/_state/")] == [marker]

    time.sleep(1.1)  # a backup's name has the second it started
    second = run_job("backup", env=env)
    assert second.returncode == 0, second.output
    assert "found damaged by verify: it is stored anew" in second.stderr
    assert store.list(f"{sample_db}/_state/") == []  # the record is gone with the damage
    latest = json.loads(run_job("list", "--json", env=env).stdout)[0]
    with store.open(f"{sample_db}/{latest['name']}.manifest.json") as stream:
        files = json.loads(stream.read())["files"]
    [again] = [f for f in files if f["name"] == victim["name"]]
    assert again["key"] == victim["key"] and again["new"]

    assert run_job("verify", env=env).returncode == 0
    healed = run_job("verify", first["name"], env=env)  # the older backup names it too
    assert healed.returncode == 0, healed.output
    target = unique_name("healed")
    restored = restore_into(env, target, first["name"])
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
