"""Issue 23 part 3: the content address's keyed hash is BLAKE3 (keyed mode), named in the
manifest (``address_hash``). A backup made before, named by HMAC-SHA256 with no such field,
still restores, verifies and is garbage-collected; deduplication never matches an address under
the wrong hash, even when a manifest claims the other hash for its objects."""

from __future__ import annotations

import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import zstandard

from backup.config import load
from backup.dirformat.address import encoding_tag, keyed_hash
from backup.manifest import Scope, content_key, files_digest
from backup.retention import prune
from backup.storage import open_all
from tests.conftest import run_job, unique_name
from tests.e2e.test_directory_format import DIR_ENV, newest, restore_into
from tests.e2e.test_directory_safety import _manifest_path
from tests.fixtures.compare import fingerprint_db


def _plain(backup_dir: Path, entry: dict) -> bytes:
    return (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress((backup_dir / entry["key"]).read_bytes())
    )


def _address_key(backup_dir: Path, database: str) -> bytes:
    return bytes.fromhex((backup_dir / database / "_dedup.key").read_text().strip())


def _as_an_older_job_wrote_it(backup_dir: Path, record: dict, env: dict[str, str]) -> dict:
    """The backup ``record`` made what a job before BLAKE3 made: each object stored under the
    HMAC-SHA256 address of its file, a manifest without ``address_hash``."""
    key = _address_key(backup_dir, record["database"])
    tag = encoding_tag(load(env).codec)
    files = []
    for entry in record["files"]:
        address = hmac.new(key, tag + _plain(backup_dir, entry), "sha256").hexdigest()
        moved = content_key(record["database"], address, ".zst")
        (backup_dir / moved).parent.mkdir(parents=True, exist_ok=True)
        (backup_dir / entry["key"]).rename(backup_dir / moved)
        files.append({**entry, "key": moved})
    data = {k: v for k, v in record.items() if k != "address_hash"}
    toc = next(f["key"] for f in files if f["name"] == "toc.dat")
    data.update(files=files, object_key=toc, sha256=files_digest(files))
    _manifest_path(backup_dir, record).write_text(json.dumps(data))
    return data


def test_backups_before_and_after_blake3_restore_verify_dedup_and_collect(
    pg15, sample_db, job_env, backup_dir
):
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    old = _as_an_older_job_wrote_it(backup_dir, newest(backup_dir), env)
    old_keys = {f["key"] for f in old["files"]}

    time.sleep(1.1)  # a backup's name has the second it started
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    new = newest(backup_dir)
    assert new["address_hash"] == "blake3"
    # the same files, named by the other hash: nothing of the older backup matched, all stored
    key, tag = _address_key(backup_dir, sample_db), encoding_tag(load(env).codec)
    for entry in new["files"]:
        hasher = keyed_hash(key, tag)
        hasher.update(_plain(backup_dir, entry))
        assert entry["key"] == content_key(sample_db, hasher.hexdigest(), ".zst")
        assert entry["new"]
    assert old_keys.isdisjoint(f["key"] for f in new["files"])

    # the adversary's manifest: the new backup's objects, claimed as HMAC-SHA256 ones (a job
    # before BLAKE3 wrote no field): the next backup does not take them by address
    claimed = {k: v for k, v in new.items() if k != "address_hash"}
    _manifest_path(backup_dir, new).write_text(json.dumps(claimed))
    time.sleep(1.1)
    assert run_job("backup", env=env).returncode == 0
    third = newest(backup_dir)
    assert third["address_hash"] == "blake3" and all(f["new"] for f in third["files"])
    # under its own hash, an object is reused: the next backup stores only its toc.dat
    time.sleep(1.1)
    assert run_job("backup", env=env).returncode == 0
    fourth = newest(backup_dir)
    assert [f["name"] for f in fourth["files"] if f["new"]] == ["toc.dat"]

    for record in (old, fourth):
        verified = run_job("verify", record["name"], env=env)
        assert verified.returncode == 0, verified.output
        target = unique_name("keyed")
        restored = restore_into(env, target, record["name"])
        assert restored.returncode == 0, restored.output
        assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)

    # retention drops the older backup: its HMAC-named objects go, every other backup's stay
    [storage] = open_all(load(env).storage)
    storage.delete([_manifest_path(backup_dir, old).relative_to(backup_dir).as_posix()])
    later = datetime.now(UTC) + timedelta(hours=1)
    prune.collect_garbage([storage], Scope(frozenset({sample_db})), later, 0, False)
    left = {str(p.relative_to(backup_dir)) for p in (backup_dir / sample_db).rglob("*.zst")}
    assert old_keys.isdisjoint(left)
    assert {f["key"] for f in fourth["files"]} <= left
    verified = run_job("verify", fourth["name"], env=env)
    assert verified.returncode == 0, verified.output
