"""What meets a directory-format backup's objects stays safe: a lying manifest is refused
(exit 5) before anything is written, retention deletes only a manifest (the objects are
shared), orphan cleanup never takes a content object or the address key, verify checks every
object, and list, status, prune --dry-run and check read such a destination as any other."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup.manifest import files_digest
from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests
from tests.e2e.test_directory_format import DIR_ENV, newest, restore_into
from tests.fixtures.compare import fingerprint_db

STAMP = "%Y%m%dT%H%M%SZ"


@pytest.fixture
def dir_backup(pg15, sample_db, job_env, backup_dir):
    env = {**job_env, **DIR_ENV}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    return env, newest(backup_dir)


def _manifest_path(backup_dir: Path, record: dict) -> Path:
    return backup_dir / record["database"] / f"{record['name']}.manifest.json"


def _rewrite(backup_dir: Path, record: dict, files: list[dict]) -> None:
    """The manifest with ``files`` instead, self-consistent otherwise (totals, digest)."""
    toc = next((f["key"] for f in files if f["name"] == "toc.dat"), record["object_key"])
    data = {
        **record,
        "files": files,
        "object_key": toc,
        "size_bytes": sum(f["size_bytes"] for f in files),
        "sha256": files_digest(files),
    }
    _manifest_path(backup_dir, record).write_text(json.dumps(data))


def _objects(backup_dir: Path, database: str) -> list[Path]:
    return sorted(p for p in (backup_dir / database / "_objects").rglob("*") if p.is_file())


@pytest.mark.parametrize("lie", ["outside", "dotdot", "sha256"])
def test_a_lying_manifest_is_exit_5_and_writes_nothing(
    pg15, sample_db, backup_dir, dir_backup, lie, tmp_path
):
    env, record = dir_backup
    files = [dict(f) for f in record["files"]]
    data_file = next(f for f in files if f["name"] != "toc.dat")
    if lie == "outside":
        # Another database's area (a copy of the object, so only the place is wrong).
        other = f"other/_objects/{data_file['key'].split('/_objects/', 1)[1]}"
        (backup_dir / other).parent.mkdir(parents=True)
        (backup_dir / other).write_bytes((backup_dir / data_file["key"]).read_bytes())
        data_file["key"] = other
    elif lie == "dotdot":
        data_file["name"] = "../../escaped.dat"
    else:
        data_file["sha256"] = "0" * 64
    _rewrite(backup_dir, record, files)
    spool = tmp_path / "spool"
    spool.mkdir()
    target = unique_name("dir_lie")
    refused = restore_into({**env, "TMPDIR": str(spool)}, target)
    assert refused.returncode == 5, refused.output
    assert not list(tmp_path.rglob("escaped.dat"))
    assert list(spool.iterdir()) == []
    with pg15.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone()
    assert exists is None
    assert run_job("verify", env=env).returncode == 5
    listed = json.loads(run_job("list", "--json", env=env).stdout)
    if lie != "sha256":  # a wrong checksum is found by reading, not by the manifest's shape
        assert [e["trusted"] for e in listed] == [False]


def test_a_damaged_object_fails_verify(dir_backup, backup_dir, sample_db):
    env, _ = dir_backup
    victim = _objects(backup_dir, sample_db)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = run_job("verify", env=env)
    assert result.returncode == 5, result.output


def test_verify_and_the_test_restore(dir_backup):
    env, record = dir_backup
    plain = run_job("verify", env=env)
    assert plain.returncode == 0, plain.output
    assert f"{len(record['files'])} files" in plain.stderr
    tested = run_job("verify", "--restore-test", env=env)
    assert tested.returncode == 0, tested.output
    assert "test restore of" in tested.stderr and "passed" in tested.stderr


def test_retention_deletes_the_manifest_and_keeps_shared_objects(
    pg15, sample_db, backup_dir, dir_backup
):
    env, record = dir_backup
    # The same backup, as if made 40 days ago: retention deletes it; its objects are shared.
    old = datetime.now(UTC) - timedelta(days=40)
    name = f"{sample_db}-{old.strftime(STAMP)}"
    iso = old.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    planted = {**record, "name": name, "created_at": iso, "finished_at": iso}
    (backup_dir / sample_db / f"{name}.manifest.json").write_text(json.dumps(planted))
    before = _objects(backup_dir, sample_db)
    dry = run_job("prune", "--dry-run", env={**env, "BACKUP_KEEP_MIN": "1"})
    assert dry.returncode == 0 and name in dry.output
    pruned = run_job("prune", env={**env, "BACKUP_KEEP_MIN": "1"})
    assert pruned.returncode == 0, pruned.output
    assert [m["name"] for m in manifests(backup_dir)] == [record["name"]]
    assert _objects(backup_dir, sample_db) == before
    target = unique_name("dir_after_prune")
    assert restore_into(env, target).returncode == 0
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_orphan_cleanup_never_takes_content_objects_or_the_key(sample_db, backup_dir, dir_backup):
    env, _ = dir_backup
    # Every object old, and a manifest nobody can read: what it names is unknown, so no
    # content object is garbage; and orphan cleanup never takes one either.
    (backup_dir / sample_db / f"{sample_db}-20250101T000000Z.manifest.json").write_text("{")
    old = time.time() - 3 * 86400
    kept = [*_objects(backup_dir, sample_db), backup_dir / sample_db / "_dedup.key"]
    for path in kept:
        os.utime(path, (old, old))
    pruned = run_job("prune", env=env)
    assert pruned.returncode == 0, pruned.output
    assert "a manifest cannot be read" in pruned.stderr
    assert run_job("backup", env=env).returncode == 0  # its start-up cleanup too
    assert all(p.exists() for p in kept)


def test_garbage_collection_takes_only_what_no_backup_names(
    pg15, sample_db, backup_dir, dir_backup
):
    env, first = dir_backup
    time.sleep(1.1)
    pg15.execute(sample_db, """INSERT INTO "Odd Schema"."Mixed Case Table" VALUES ('g', 'c', 1)""")
    assert run_job("backup", env=env).returncode == 0
    second = newest(backup_dir)
    only_first = {f["key"] for f in first["files"]} - {f["key"] for f in second["files"]}
    assert len(only_first) == 2  # the first's TOC and its copy of the changed table
    # The first backup made 40 days ago, every object 3 days old: retention deletes it, and
    # its two objects no other backup names go with it.
    when = datetime.now(UTC) - timedelta(days=40)
    name = f"{sample_db}-{when.strftime(STAMP)}"
    iso = when.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    _manifest_path(backup_dir, first).unlink()
    moved = {**first, "name": name, "created_at": iso, "finished_at": iso}
    (backup_dir / sample_db / f"{name}.manifest.json").write_text(json.dumps(moved))
    old = time.time() - 3 * 86400
    for path in _objects(backup_dir, sample_db):
        os.utime(path, (old, old))
    dry = run_job("prune", "--dry-run", env={**env, "BACKUP_KEEP_MIN": "1"})
    assert "2 content object(s) no backup names would be deleted" in dry.stdout, dry.output
    pruned = run_job("prune", env={**env, "BACKUP_KEEP_MIN": "1"})
    assert pruned.returncode == 0, pruned.output
    assert "2 content object(s) no backup names deleted" in pruned.stdout
    left = {p.relative_to(backup_dir).as_posix() for p in _objects(backup_dir, sample_db)}
    assert left == {f["key"] for f in second["files"]}
    assert run_job("verify", env=env).returncode == 0
    target = unique_name("dir_after_gc")
    assert restore_into(env, target).returncode == 0
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_list_status_and_check_read_a_directory_destination(dir_backup, sample_db):
    env, record = dir_backup
    table = run_job("list", env=env)
    assert table.returncode == 0 and record["name"] in table.stdout
    total = sum(f["size_bytes"] for f in record["files"]) / 1e6
    assert f"{total:.2f}" in table.stdout
    assert f"(directory: {total:.2f} MB of it new)" in table.stdout
    [entry] = json.loads(run_job("list", "--json", env=env).stdout)
    assert entry["format"] == "directory" and entry["trusted"] is True
    assert entry["size_bytes"] == sum(f["size_bytes"] for f in record["files"])
    assert run_job("status", env=env).returncode == 0
    checked = run_job("check", env=env)
    assert checked.returncode == 0, checked.output
    assert "spool: " in checked.stdout and "BACKUP_JOBS=2" in checked.stdout
