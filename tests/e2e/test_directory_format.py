"""BACKUP_FORMAT=directory end to end: pg_dump -Fd -j into a spool, one content object per
file on every kind of destination, unchanged tables stored once, restore with pg_restore -j,
encryption, and a failed run that leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backup import dump, restore
from backup.config import load
from backup.manifest import catalog
from tests.conftest import clean_environ, run_job, unique_name
from tests.contract.conftest import b2_storage
from tests.e2e.helpers import fake_pg_dump, manifests, processes_running, wait_for_pg_dump
from tests.e2e.test_encryption import keys  # noqa: F401 (a fixture)
from tests.fixtures.compare import fingerprint_db

# One object per file (no packs: tests/e2e/test_directory_packs.py has them), so that each
# table's object and its reuse can be seen.
DIR_ENV = {"BACKUP_FORMAT": "directory", "BACKUP_JOBS": "2", "BACKUP_PACK_BELOW_KB": "0"}
DEDUP_KEY = "0123456789abcdef" * 4


def restore_into(env: dict[str, str], target: str, *extra: str):
    return run_job("restore", *extra, "--target-db", target, "--force", env=env)


def newest(backup_dir) -> dict:
    return max(manifests(backup_dir), key=lambda m: m["created_at"])


def test_local_backup_streams_files_and_restores_identical(
    pg15, sample_db, job_env, backup_dir, tmp_path
):
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**job_env, **DIR_ENV, "LOG_LEVEL": "debug", "TMPDIR": str(spool)}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    # Every file was taken as pg_dump closed it, and pg_dump never tripped over one gone.
    assert "pg_dump: error" not in result.stderr
    assert "--jobs=2" in result.stderr and "-Fd" in result.stderr
    assert list(spool.iterdir()) == []  # the spool is removed
    [record] = manifests(backup_dir)
    assert record["format"] == "directory" and record["format_version"] == 2
    names = {f["name"] for f in record["files"]}
    assert "toc.dat" in names and "blobs.toc" in names and len(names) > 5
    assert all(f["new"] for f in record["files"])
    stored = {p.name for p in (backup_dir / sample_db / "_objects").rglob("*.zst")}
    assert {f["key"].rsplit("/", 1)[1] for f in record["files"]} == stored
    assert (backup_dir / sample_db / "_dedup.key").exists()
    target = unique_name("dir_local")
    restored = restore_into(env, target)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_a_second_backup_stores_only_the_changed_table(pg15, sample_db, job_env, backup_dir):
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    before = fingerprint_db(pg15, sample_db)
    first = newest(backup_dir)
    time.sleep(1.1)  # a backup's name has the second it started
    pg15.execute(
        sample_db, """INSERT INTO "Odd Schema"."Mixed Case Table" VALUES ('new', 'y', 3)"""
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    second = newest(backup_dir)
    assert second["name"] != first["name"]
    new = sorted(f["name"] for f in second["files"] if f["new"])
    assert len(new) == 2 and "toc.dat" in new, new  # the changed table's file and the TOC
    shared = {f["key"] for f in first["files"]} & {f["key"] for f in second["files"]}
    assert len(shared) == len(second["files"]) - 2
    listing = run_job("list", "--json", env=env)
    by_name = {e["name"]: e for e in json.loads(listing.stdout)}
    assert by_name[second["name"]]["new_bytes"] < by_name[second["name"]]["size_bytes"]
    old_target, new_target = unique_name("dir_first"), unique_name("dir_second")
    assert restore_into(env, old_target, first["name"]).returncode == 0
    assert restore_into(env, new_target, second["name"]).returncode == 0
    assert fingerprint_db(pg15, old_target) == before
    assert fingerprint_db(pg15, new_target) == fingerprint_db(pg15, sample_db)
    assert fingerprint_db(pg15, new_target) != before


def test_s3_backup_restores_identical(pg15, sample_db, job_env, s3_server):
    bucket = s3_server.create_bucket()
    env = {
        **job_env,
        **DIR_ENV,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    keys_found = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith(f"pg/{sample_db}/_objects/") for k in keys_found)
    target = unique_name("dir_s3")
    restored = restore_into(env, target)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
    assert run_job("verify", "--restore-test", env=env).returncode == 0


def test_b2_backup_restores_identical(pg15, sample_db, job_env, b2_sim):
    """b2sdk's simulator lives in this process: the engines are called as the CLI does."""
    config = load({**job_env, **DIR_ENV})
    storage = b2_storage(b2_sim, "pg")
    [result] = dump.run_backup(config, [storage])
    assert result.status == "success", result.error
    names = [n for n, _ in b2_sim.file_versions() if n.startswith(f"pg/{sample_db}/_objects/")]
    assert names and all(n.endswith(".zst") for n in names)
    entries = [e for e in catalog.list_entries([storage]) if e.manifest.database == sample_db]
    assert entries[0].manifest.format == "directory"
    target = unique_name("dir_b2")
    options = restore.RestoreOptions(target_db=target, force=True)
    restore.restore_database(config, {storage.url: storage}, entries[:1], options)
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_encrypted_needs_a_dedup_key_and_restores_with_the_identity(
    pg15,
    sample_db,
    job_env,
    backup_dir,
    keys,  # noqa: F811
):
    env = {**job_env, **DIR_ENV, "BACKUP_AGE_RECIPIENTS": keys["public"]}
    refused = run_job("backup", env=env)
    assert refused.returncode == 2 and "BACKUP_DEDUP_KEY" in refused.stderr
    assert manifests(backup_dir) == []
    env["BACKUP_DEDUP_KEY"] = DEDUP_KEY
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert DEDUP_KEY not in result.output
    first = newest(backup_dir)
    assert all(f["key"].endswith(".zst.age") for f in first["files"])
    assert not (backup_dir / sample_db / "_dedup.key").exists()  # never kept in the bucket
    time.sleep(1.1)
    assert run_job("backup", env=env).returncode == 0
    assert [f["name"] for f in newest(backup_dir)["files"] if f["new"]] == ["toc.dat"]
    # Other recipients: every object is stored anew, none encrypted to the old key reused.
    time.sleep(1.1)
    other = {**env, "BACKUP_AGE_RECIPIENTS": keys["other_public"]}
    assert run_job("backup", env=other).returncode == 0
    third = newest(backup_dir)
    assert all(f["new"] for f in third["files"])
    target = unique_name("dir_age")
    opened = {**other, "BACKUP_AGE_IDENTITY_FILE": str(keys["other"])}
    restored = restore_into(opened, target, third["name"])
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
    no_key = restore_into(other, unique_name("dir_nokey"))
    assert no_key.returncode == 5, no_key.output


def test_a_failed_dump_leaves_no_backup_no_object_and_no_spool(
    job_env, backup_dir, tmp_path, sample_db
):
    spool = tmp_path / "spool"
    spool.mkdir()
    # A pg_dump that writes one table's file (which the job uploads at once), then fails.
    bindir = fake_pg_dump(
        tmp_path / "bin",
        'for a in "$@"; do case "$a" in --file=*) d="${a#--file=}";; esac; done\n'
        'head -c 100000 /dev/urandom > "$d/4242.dat"\n'
        "sleep 1\n"
        "echo 'pg_dump: error: boom' >&2; exit 1",
    )
    env = {**job_env, **DIR_ENV, "BACKUP_PG_BIN_DIRS": str(bindir), "TMPDIR": str(spool)}
    result = run_job("backup", env=env)
    assert result.returncode == 3, result.output
    assert "boom" in result.stderr
    assert manifests(backup_dir) == []
    assert [p for p in (backup_dir / sample_db).rglob("*") if p.is_file()] == [
        backup_dir / sample_db / "_dedup.key"
    ]
    assert list(spool.iterdir()) == []
    assert processes_running(str(bindir)) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKUP_FORMAT", "tar"),
        ("BACKUP_JOBS", "0"),
        ("BACKUP_JOBS", "65"),
        ("BACKUP_DEDUP_KEY", "too-short"),
        ("BACKUP_PACK_BELOW_KB", "8193"),
        ("BACKUP_PACK_BELOW_KB", "1MB"),
    ],
)
def test_bad_settings_are_exit_2_naming_the_variable(job_env, backup_dir, name, value):
    result = run_job("backup", env={**job_env, **DIR_ENV, name: value})
    assert result.returncode == 2, result.output
    assert name in result.stderr and "too-short" not in result.output
    assert manifests(backup_dir) == []


def test_a_spool_too_small_for_the_largest_table_is_refused(job_env, backup_dir, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        checked = run_job("check", env={**job_env, **DIR_ENV, "TMPDIR": str(small)})
        assert checked.returncode == 2 and "largest table" in checked.output, checked.output
        result = run_job("backup", env={**job_env, **DIR_ENV, "TMPDIR": str(small)})
        assert result.returncode == 2, result.output
        assert "TMPDIR" in result.stderr and "largest table" in result.stderr
        assert manifests(backup_dir) == []
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def _readme_recipe() -> str:
    """The by-hand recipe of docs/large-databases.md (once README's)."""
    text = (Path(__file__).parents[2] / "docs" / "large-databases.md").read_text(encoding="utf-8")
    section = text.split("## Restoring a directory backup by hand", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_recipe_by_hand_restores_an_encrypted_s3_backup(
    pg15,
    sample_db,
    job_env,
    s3_server,
    tmp_path,
    keys,  # noqa: F811
):
    bucket = s3_server.create_bucket()
    s3 = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    env = {
        **job_env,
        **DIR_ENV,
        **s3,
        "BACKUP_DESTINATIONS": f"s3://{bucket}/nightly",
        "BACKUP_AGE_RECIPIENTS": keys["public"],
        "BACKUP_DEDUP_KEY": DEDUP_KEY,
        "BACKUP_PACK_BELOW_KB": "1024",  # the small tables in packs: the recipe reads ranges
    }
    assert run_job("backup", env=env).returncode == 0
    [entry] = json.loads(run_job("list", "--json", env=env).stdout)
    work = tmp_path / "by_hand"
    work.mkdir()
    manifest_name = f"{entry['name']}.manifest.json"
    s3_server.client().download_file(
        bucket, f"nightly/{sample_db}/{manifest_name}", str(work / manifest_name)
    )
    target = unique_name("by_hand")
    script = (
        _readme_recipe()
        .replace("shop-20251110T030000Z.manifest.json", manifest_name)
        .replace("BUCKET=bucket PREFIX=prefix", f"BUCKET={bucket} PREFIX=nightly")
        .replace("key.txt", str(keys["key"]))
        .replace("shop_restored", target)
    )
    shell_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_"))},
        **pg15.env(sample_db),
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": s3_server.region,
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "PATH": f"/usr/lib/postgresql/15/bin:{os.environ['PATH']}",
    }
    files = json.loads((work / manifest_name).read_text())["files"]
    assert any("offset" in f for f in files) and any("offset" not in f for f in files)
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, env=shell_env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_sigterm_mid_dump_leaves_no_backup_no_object_no_spool(pg15, job_env, backup_dir, tmp_path):
    database = unique_name("two_tables")
    pg15.create_database(database)
    pg15.execute(
        database,
        "CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 1000) g; "
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 250) AS filler "
        "FROM generate_series(1, 300000) g",
    )
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {
        **clean_environ(),
        **job_env,
        **DIR_ENV,
        "PGDATABASE": database,
        "BACKUP_COMPRESSION": "none",
        "TMPDIR": str(spool),
        "BACKUP_PROGRESS_SECONDS": "0",
    }
    job = subprocess.Popen(
        [sys.executable, str(Path(__file__).parents[2] / "entrypoint.py"), "backup"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_pg_dump(pg15, database, "query ILIKE 'COPY public.big%%'", "copied big")
    objects = backup_dir / database / "_objects"
    deadline = time.monotonic() + 30
    # The small table's file is stored while the big one is still being dumped.
    while not [p for p in objects.rglob("*") if p.is_file() and not p.name.endswith(".partial")]:
        assert time.monotonic() < deadline, "the small table was never stored during the dump"
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 130, stderr
    assert manifests(backup_dir) == []
    assert [p for p in objects.rglob("*") if p.is_file()] == []
    assert list(spool.iterdir()) == []
    time.sleep(0.5)
    with pg15.connect() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pg_dump%%' "
            "AND datname = %s",
            (database,),
        ).fetchone()[0]
    assert left == 0


def test_restore_over_the_database_swaps_and_in_place_works(pg15, sample_db, job_env):
    env = {**job_env, **DIR_ENV}
    assert run_job("backup", env=env).returncode == 0
    backed_up = fingerprint_db(pg15, sample_db)
    pg15.execute(sample_db, "DELETE FROM shop.orders WHERE id % 2 = 0")
    swapped = run_job("restore", "--force", env=env)
    assert swapped.returncode == 0, swapped.output
    assert fingerprint_db(pg15, sample_db) == backed_up
    with pg15.connect() as conn:
        kept = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE %s",
            (f"{sample_db}_pre_restore_%",),
        ).fetchone()[0]
    assert kept == 1  # the old database is kept, renamed
    pg15.execute(sample_db, 'DELETE FROM "Odd Schema"."Mixed Case Table"')
    in_place = run_job("restore", "--in-place", "--force", "--jobs", "3", env=env)
    assert in_place.returncode == 0, in_place.output
    assert fingerprint_db(pg15, sample_db) == backed_up


def test_directory_backups_of_postgresql_17_and_18_restore_identical(
    pg17, pg18, backup_dir, tmp_path
):
    from tests.e2e.test_versions import _dirs, _env, _fill

    for cluster in (pg17, pg18):
        database = _fill(cluster)
        env = {
            **_env(cluster, database, backup_dir, tmp_path, BACKUP_PG_BIN_DIRS=_dirs()),
            **DIR_ENV,
        }
        result = run_job("backup", env=env)
        assert result.returncode == 0, result.output
        target = unique_name("dir_new_major")
        restored = run_job(
            "restore", "--database", database, "--target-db", target, "--force", env=env
        )
        assert restored.returncode == 0, restored.output
        assert fingerprint_db(cluster, target) == fingerprint_db(cluster, database)
