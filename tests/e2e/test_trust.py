"""Nothing lost, nothing silent: manifests believed only about their own backups, retention
inside the job's databases, future-dated manifests flagged, orphan objects collected. Through
the CLI, on a local destination where manifests are easy to tamper with by hand."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests

STAMP = "%Y%m%dT%H%M%SZ"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def plant(backup_dir: Path, source: dict, database: str, when: datetime, **changes) -> dict:
    """A manifest of ``database`` dated ``when`` under its own key, copied from ``source``;
    ``changes`` override fields (a lie). Without a lie it is self-consistent and its object
    is a copy of the source's object."""
    name = f"{database}-{when.strftime(STAMP)}"
    own_key = f"{database}/{name}.dump.zst"
    data = {
        **source,
        "name": name,
        "database": database,
        "object_key": own_key,
        "created_at": _iso(when),
        "finished_at": _iso(when),
        **changes,
    }
    folder = backup_dir / database
    folder.mkdir(exist_ok=True)
    if "object_key" not in changes:
        (backup_dir / own_key).write_bytes((backup_dir / source["object_key"]).read_bytes())
    (folder / f"{name}.manifest.json").write_text(json.dumps(data))
    return data


@pytest.fixture
def two_databases(pg15, sample_db, job_env):
    """``sample_db`` and a small second database ``other``, both backed up once."""
    other = pg15.create_database(unique_name("other"))
    pg15.execute(other, "CREATE TABLE secret (v text); INSERT INTO secret VALUES ('other data')")
    env = {**job_env, "BACKUP_DATABASES": f"{sample_db},{other}"}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    by_db = {m["database"]: m for m in manifests(Path(job_env["BACKUP_DESTINATIONS"][7:]))}
    return env, other, by_db


def test_a_manifest_naming_another_databases_object_is_refused(pg15, sample_db, two_databases):
    env, other, by_db = two_databases
    backup_dir = Path(env["BACKUP_DESTINATIONS"][7:])
    theirs = by_db[other]
    # Self-consistent (size and sha256 of the object it names), newest of sample_db, but the
    # object is the other database's.
    lie = plant(
        backup_dir,
        by_db[sample_db],
        sample_db,
        datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5),
        object_key=theirs["object_key"],
        size_bytes=theirs["size_bytes"],
        sha256=theirs["sha256"],
    )
    target = unique_name("lied")
    for args in (["restore", lie["name"]], ["restore", "latest", "--database", sample_db]):
        result = run_job(*args, "--target-db", target, "--force", env=env)
        assert result.returncode == 5, result.output
        assert "not trustworthy" in result.stderr and "Traceback" not in result.output
    assert target not in pg15.databases()
    verify = run_job("verify", lie["name"], env=env)
    assert verify.returncode == 5, verify.output
    listed = run_job("list", env=env)
    assert listed.returncode == 0, listed.output
    assert lie["name"] in listed.stdout and "NOT TRUSTWORTHY" in listed.stdout
    rows = json.loads(run_job("list", "--json", env=env).stdout)
    [flagged] = [r for r in rows if r["name"] == lie["name"]]
    assert flagged["trusted"] is False and "not this backup's" in flagged["problem"]
    # The real backups are still there and good, by name.
    assert run_job("verify", by_db[sample_db]["name"], env=env).returncode == 0


@pytest.mark.parametrize("key", ["../../outside.dump.zst", "/etc/hostname"])
def test_a_path_outside_the_scheme_is_an_integrity_error(sample_db, job_env, backup_dir, key):
    assert run_job("backup", env=job_env).returncode == 0
    [real] = manifests(backup_dir)
    lie = plant(backup_dir, real, sample_db, datetime.now(UTC) - timedelta(days=1), object_key=key)
    result = run_job("verify", lie["name"], env=job_env)
    assert result.returncode == 5, result.output


def test_prune_never_deletes_another_backups_object(sample_db, job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    [real] = manifests(backup_dir)
    # A stale manifest (90 days old) whose object_key names the newest backup's object.
    stale = plant(
        backup_dir,
        real,
        sample_db,
        datetime.now(UTC) - timedelta(days=90),
        object_key=real["object_key"],
    )
    old = plant(backup_dir, real, sample_db, datetime.now(UTC) - timedelta(days=80))
    env = {**job_env, "BACKUP_KEEP_MIN": "1"}
    dry = run_job("prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    assert "1 untrustworthy manifest(s) left alone" in dry.stdout
    result = run_job("prune", env=env)
    assert result.returncode == 0, result.output
    assert f"leaving {stale['name']}" in result.stderr
    assert (backup_dir / real["object_key"]).exists()
    assert not (backup_dir / old["object_key"]).exists()
    assert run_job("verify", real["name"], env=job_env).returncode == 0


def test_invalid_and_future_dated_manifests_are_flagged(sample_db, job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    [real] = manifests(backup_dir)
    broken = plant(backup_dir, real, sample_db, datetime.now(UTC) - timedelta(days=2), name=None)
    future = plant(backup_dir, real, sample_db, datetime.now(UTC) + timedelta(days=10))
    listed = run_job("list", env=job_env)
    assert listed.returncode == 0, listed.output
    assert "dated in the future" in listed.stdout
    assert "NOT TRUSTWORTHY" in listed.stdout and "name is None" in listed.stdout
    assert f"{sample_db}-" in listed.stdout and broken["created_at"][:10] in listed.stdout
    status = run_job("status", env=job_env)
    assert status.returncode == 1, status.output
    assert "dated in the future" in status.stderr and future["name"] in status.stderr
    check = run_job("check", env=job_env)
    assert check.returncode == 0, check.output
    assert "dated in the future" in check.stdout and "not trustworthy" in check.stdout
    # The future-dated one takes no BACKUP_KEEP_MIN slot: the real backup stays.
    env = {**job_env, "BACKUP_KEEP_MIN": "1", "BACKUP_RETENTION_DAYS": "0"}
    assert run_job("prune", env=env).returncode == 0
    assert (backup_dir / real["object_key"]).exists()
    names = {m.get("name") for m in manifests(backup_dir)}
    assert real["name"] in names and future["name"] in names


def test_two_jobs_share_a_destination(pg15, sample_db, job_env, backup_dir):
    other = pg15.create_database(unique_name("app"))
    app_env = {**job_env, "PGDATABASE": other}
    assert run_job("backup", env=app_env).returncode == 0
    assert run_job("backup", env=job_env).returncode == 0
    [app_backup] = [m for m in manifests(backup_dir) if m["database"] == other]
    for days in (40, 50, 60):
        plant(backup_dir, app_backup, other, datetime.now(UTC) - timedelta(days=days))
    env = {**job_env, "BACKUP_KEEP_MIN": "1"}
    assert run_job("prune", env=env).returncode == 0
    assert run_job("backup", env=env).returncode == 0
    assert len([m for m in manifests(backup_dir) if m["database"] == other]) == 4
    status = run_job("status", "--json", env=job_env)
    assert status.returncode == 0, status.output
    assert {row["database"] for row in json.loads(status.stdout)} == {sample_db}
    # The app job's own prune takes its old backups.
    assert run_job("prune", env={**app_env, "BACKUP_KEEP_MIN": "1"}).returncode == 0
    assert len([m for m in manifests(backup_dir) if m["database"] == other]) == 1


def test_all_means_the_servers_databases_now_and_the_globals(pg15, job_env, backup_dir):
    template = {
        "format_version": 1,
        "kind": "database",
        "size_bytes": 1,
        "sha256": "0" * 64,
        "compression": "zstd",
        "encryption": None,
        "pg_dump_version": "15",
        "server_version": "15",
        "duration_s": 1.0,
        "job_version": "0",
        "object_key": "x",
    }
    gone = unique_name("dropped")  # not on the server (any more)
    old = datetime.now(UTC) - timedelta(days=90)
    kept = plant_bare(backup_dir, template, gone, old)
    kept_too = plant_bare(backup_dir, template, gone, old - timedelta(days=1))
    postgres_old = plant_bare(backup_dir, template, "postgres", old)
    env = {**job_env, "BACKUP_DATABASES": "all", "BACKUP_KEEP_MIN": "1"}
    env.pop("PGDATABASE")
    newer = plant_bare(backup_dir, template, "postgres", old + timedelta(days=1))
    result = run_job("prune", env=env)
    assert result.returncode == 0, result.output
    left = {m["name"] for m in manifests(backup_dir)}
    assert {kept, kept_too, newer} <= left and postgres_old not in left
    status = run_job("status", "--json", env=env)
    rows = {row["database"] for row in json.loads(status.stdout)}
    assert "postgres" in rows and "globals" in rows and gone not in rows


def plant_bare(backup_dir: Path, template: dict, database: str, when: datetime) -> str:
    name = f"{database}-{when.strftime(STAMP)}"
    key = f"{database}/{name}.dump.zst"
    (backup_dir / database).mkdir(exist_ok=True)
    (backup_dir / key).write_bytes(b"x")
    data = {**template, "name": name, "database": database, "object_key": key}
    data |= {"created_at": _iso(when), "finished_at": _iso(when)}
    (backup_dir / database / f"{name}.manifest.json").write_text(json.dumps(data))
    return name


def test_orphans_are_collected_by_prune_and_at_the_start_of_a_run(sample_db, job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    env = {**job_env, "BACKUP_TIMEOUT": "1h"}  # safe age: 2 h
    folder = backup_dir / sample_db
    old_stamp = (datetime.now(UTC) - timedelta(days=1)).strftime(STAMP)
    orphan = folder / f"{sample_db}-{old_stamp}.dump.zst"
    young = folder / f"{sample_db}-{datetime.now(UTC).strftime('%Y%m%dT000000Z')}.dump.gz"
    for path in (orphan, young):
        path.write_bytes(b"left by a run cut off before its manifest")
    three_hours_ago = time.time() - 3 * 3600
    os.utime(orphan, (three_hours_ago, three_hours_ago))
    dry = run_job("prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    assert f"would delete orphan {sample_db}/{orphan.name}" in dry.stderr
    assert "1 orphan object(s) without a manifest would be deleted" in dry.stdout
    assert orphan.exists()
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert f"delete orphan {sample_db}/{orphan.name}" in result.stderr
    assert not orphan.exists() and young.exists()
    os.utime(young, (three_hours_ago, three_hours_ago))
    assert run_job("prune", env=env).returncode == 0
    assert not young.exists()
    assert len(manifests(backup_dir)) == 2  # the backups themselves untouched


def test_on_s3_prune_stays_in_its_databases_and_never_follows_a_lie(
    pg15, sample_db, job_env, s3_server
):
    from tests.e2e.test_destinations import _s3_env, _s3_keys

    bucket = s3_server.create_bucket()
    env = {**job_env, **_s3_env(s3_server, bucket), "BACKUP_DESTINATIONS": f"s3://{bucket}/pg"}
    assert run_job("backup", env=env).returncode == 0
    client = s3_server.client()
    [key] = [k for k in _s3_keys(s3_server, bucket) if k.endswith(".manifest.json")]
    real = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def put_manifest(database: str, when: datetime, **changes) -> str:
        name = f"{database}-{when.strftime(STAMP)}"
        data = {
            **real,
            "name": name,
            "database": database,
            "object_key": f"{database}/{name}.dump.zst",
            "created_at": _iso(when),
            "finished_at": _iso(when),
            **changes,
        }
        client.put_object(Bucket=bucket, Key=f"pg/{database}/{name}.dump.zst", Body=b"x")
        client.put_object(
            Bucket=bucket,
            Key=f"pg/{database}/{name}.manifest.json",
            Body=json.dumps(data).encode(),
        )
        return name

    now = datetime.now(UTC).replace(microsecond=0)
    other_job = [put_manifest("app", now - timedelta(days=d)) for d in (40, 50)]
    lie = put_manifest(sample_db, now - timedelta(days=90), object_key=real["object_key"])
    result = run_job("prune", env={**env, "BACKUP_KEEP_MIN": "1"})
    assert result.returncode == 0, result.output
    keys = set(_s3_keys(s3_server, bucket))
    assert f"pg/{real['object_key']}" in keys
    assert f"pg/{sample_db}/{lie}.manifest.json" in keys
    assert {f"pg/app/{name}.manifest.json" for name in other_job} <= keys
    assert run_job("verify", real["name"], env=env).returncode == 0
    assert run_job("verify", lie, env=env).returncode == 5
