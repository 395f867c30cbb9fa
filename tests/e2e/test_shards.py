"""BACKUP_SHARDS: K processes of one job (a Kubernetes Indexed Job's pods, each with its
JOB_COMPLETION_INDEX) against one server and one bucket: every database backed up exactly once,
the globals by shard 0, no shard's retention touching another's backups, and status without
an index seeing the whole job."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from backup.config.scale import shard_of
from tests.conftest import REPO, clean_environ, run_job
from tests.fixtures.pgcluster import Cluster, find_bindir

SHARDS = 3
DATABASES = [f"tenant_{n:02d}" for n in range(1, 10)]


@pytest.fixture(scope="module")
def cluster():
    own = Cluster(find_bindir(15)).start()
    for name in DATABASES:
        own.create_database(name)
        own.execute(name, "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)")
    yield own
    own.stop()


def _owner(name: str) -> int:
    return shard_of(name, SHARDS)


def _env(cluster, s3_server, bucket, tmp_path, **extra):
    return cluster.env(
        "postgres",
        BACKUP_DATABASES="all",
        BACKUP_EXCLUDE_DATABASES="postgres",
        BACKUP_DESTINATIONS=f"s3://{bucket}/pg",
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_REGION=s3_server.region,
        S3_ENDPOINT_URL=s3_server.endpoint_url,
        BACKUP_LOCK_DIR=str(tmp_path),  # one lock directory: the shards' locks must differ
        **extra,
    )


def _run_shards(env: dict[str, str], indexes: list[int]) -> dict[int, str]:
    """Run the shards ``indexes`` at the same time; their logs by index (each exited 0)."""
    jobs = {
        index: subprocess.Popen(
            [sys.executable, str(REPO / "entrypoint.py"), "backup"],
            env={
                **clean_environ(),
                "BACKUP_PROGRESS_SECONDS": "0",
                **env,
                "BACKUP_SHARDS": str(SHARDS),
                "JOB_COMPLETION_INDEX": str(index),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for index in indexes
    }
    logs = {}
    for index, job in jobs.items():
        _, stderr = job.communicate(timeout=300)
        assert job.returncode == 0, stderr
        logs[index] = stderr
    return logs


def _backups(s3_server, bucket) -> Counter[str]:
    """How many backups (manifests) each database (and ``_globals``) has in the bucket."""
    client = s3_server.client()
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="pg/")
        for item in page.get("Contents", [])
    ]
    return Counter(k.split("/")[1] for k in keys if k.endswith(".manifest.json"))


def test_shards_back_up_each_database_once_and_keep_to_their_own(cluster, s3_server, tmp_path):
    assert len({_owner(name) for name in DATABASES}) == SHARDS  # every shard has work
    bucket = s3_server.create_bucket()
    env = _env(cluster, s3_server, bucket, tmp_path)
    # Two backups of everything by the job unsharded: retention has something to take.
    for _ in range(2):
        plain = run_job("backup", env={**env, "BACKUP_KEEP_MIN": "10"})
        assert plain.returncode == 0, plain.output
    assert _backups(s3_server, bucket) == Counter({**dict.fromkeys(DATABASES, 2), "_globals": 2})

    # Shards 1 and 2 at once, keeping only the newest backup: each prunes its own databases.
    prune_all = {"BACKUP_KEEP_MIN": "1", "BACKUP_RETENTION_DAYS": "0"}
    logs = _run_shards({**env, **prune_all}, [1, 2])
    counts = _backups(s3_server, bucket)
    for name in DATABASES:
        assert counts[name] == (2 if _owner(name) == 0 else 1), name
        for index, log in logs.items():
            assert (f"of {name}\n" in log) == (_owner(name) == index), (name, index)
    assert counts["_globals"] == 2  # shard 0's: untouched
    assert all("of globals\n" not in log for log in logs.values())

    # Shard 0 then: its databases and the globals.
    _run_shards({**env, **prune_all}, [0])
    assert _backups(s3_server, bucket) == Counter({**dict.fromkeys(DATABASES, 1), "_globals": 1})

    # The whole job, every shard at once: each database backed up exactly once more.
    _run_shards({**env, "BACKUP_KEEP_MIN": "10"}, list(range(SHARDS)))
    assert _backups(s3_server, bucket) == Counter({**dict.fromkeys(DATABASES, 2), "_globals": 2})

    # status without an index: every shard's databases and the globals, all fresh.
    status = run_job("status", "--json", env={**env, "BACKUP_SHARDS": str(SHARDS)})
    assert status.returncode == 0, status.output
    rows = json.loads(status.stdout)
    assert sorted(r["database"] for r in rows) == sorted([*DATABASES, "globals"])
    assert {r["state"] for r in rows} == {"ok"}
    # With an index: that shard's alone.
    one = run_job(
        "status", "--json", env={**env, "BACKUP_SHARDS": str(SHARDS), "BACKUP_SHARD_INDEX": "1"}
    )
    assert one.returncode == 0, one.output
    assert sorted(r["database"] for r in json.loads(one.stdout)) == sorted(
        name for name in DATABASES if _owner(name) == 1
    )
    # Each shard keeps its own history beside the others'.
    keys = {
        item["Key"]
        for item in s3_server.client().list_objects_v2(Bucket=bucket, Prefix="pg/_state/")[
            "Contents"
        ]
    }
    for i in range(SHARDS):
        assert any(
            k.startswith("pg/_state/status-") and k.endswith(f"-shard-{i}-of-{SHARDS}.json")
            for k in keys
        )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({}, "JOB_COMPLETION_INDEX"),
        ({"JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX=3"),
        ({"BACKUP_SHARD_INDEX": "7"}, "BACKUP_SHARD_INDEX=7"),
    ],
    ids=["no-index", "index-too-large", "override-too-large"],
)
def test_a_shard_without_a_valid_index_is_refused(cluster, backup_dir, tmp_path, extra, named):
    env = cluster.env(
        "postgres",
        BACKUP_DATABASES="all",
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_SHARDS=str(SHARDS),
        **extra,
    )
    for command in ("backup", "prune"):
        result = run_job(command, env=env)
        assert result.returncode == 2, result.output
        assert named in result.output
    assert list(backup_dir.rglob("*.manifest.json")) == []
