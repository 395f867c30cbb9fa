"""Memory is bounded by construction: a few hundred MB through the real job stay under the bound.

Not a timed test: it measures the peak memory of the job's process tree (the job, pg_restore
or pg_dump) while a ~300 MB dump goes through it, and checks it against ``BOUND_MIB``
(docs/performance.md). The data is the worst case for a decompressor: long runs of blanks
(pgbench's filler), where 1 MiB of zstd inflates to hundreds of MiB if decompressed in one go.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import REPO, clean_environ, unique_name
from tests.fixtures.proctree import TreeSampler

MIB = 1024 * 1024
BOUND_MIB = 100
# A backup to S3 meets the 100 MiB target only just (99 MiB measured for the tree: psycopg's
# and botocore's imports, botocore's models held as plain dicts (s3/client.py), two 8 MiB parts
# and two zstd workers; docs/performance.md); this bound catches a regression, not the target.
S3_BACKUP_BOUND_MIB = 112
# 150,000 x ~2 KB of blanks (a 300 MB dump, ~10 MB on disk: TOAST compresses them) and 60 MB
# of hex text (~35 MB compressed: several upload parts).
ROWS = 150_000


@dataclass
class Peak:
    tree_mib: float  # largest sum of RSS over the job and its descendants, sampled
    # The kernel's own peak RSS (VmHWM) of the largest process, read while it runs: exact but
    # for its last 20 ms. Not wait4's ru_maxrss, which counts the RSS of this (pytest) process
    # that forked the job.
    process_mib: float
    returncode: int
    output: str


def run_measured(*args: str, env: dict[str, str]) -> Peak:
    """``python entrypoint.py ARGS``, its process tree sampled every 20 ms."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "entrypoint.py"), *args],
        env={**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **env},
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    assert proc.stdout is not None
    output = proc.stdout.read().decode("utf-8", "replace")
    proc.wait()
    sampler.stop()
    return Peak(sampler.peak_bytes / MIB, sampler.largest_bytes / MIB, proc.returncode, output)


@pytest.fixture(scope="module")
def blank_db(pg15) -> str:
    name = unique_name("blanks")
    pg15.create_database(name)
    pg15.execute(
        name,
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int, filler text); "
        f"INSERT INTO accounts SELECT g, g % 1000, md5(g::text) || repeat(' ', 2000) "
        f"FROM generate_series(1, {ROWS}) g; "
        # Hex text, half incompressible: ~35 MB stored, several upload parts.
        "CREATE TABLE events (id int, body text); "
        "INSERT INTO events SELECT g, (SELECT string_agg(md5(g::text || '-' || i::text), '') "
        "FROM generate_series(1, 32) i) FROM generate_series(1, 60000) g",
    )
    return name


def _count(pg15, database: str) -> int:
    with pg15.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM accounts").fetchone()[0]


def _assert_bounded(peak: Peak, what: str, bound_mib: int = BOUND_MIB) -> None:
    assert peak.returncode == 0, peak.output[-3000:]
    tree, largest = peak.tree_mib, peak.process_mib
    assert tree < bound_mib, f"{what}: the job's process tree peaked at {tree:.0f} MiB"
    assert largest < bound_mib, f"{what}: one process peaked at {largest:.0f} MiB"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_backup_and_restore_of_300_mb_stay_under_the_memory_bound(pg15, blank_db, tmp_path, jobs):
    env = pg15.env(
        blank_db, BACKUP_DESTINATIONS=f"file://{tmp_path}/backups", BACKUP_LOCK_DIR=str(tmp_path)
    )
    _assert_bounded(run_measured("backup", env=env), "backup")
    target = unique_name("blanks_restored")
    restored = run_measured("restore", "--target-db", target, "--force", "--jobs", jobs, env=env)
    _assert_bounded(restored, f"restore --jobs {jobs}")
    assert _count(pg15, target) == ROWS


def test_backup_to_and_restore_from_s3_stay_under_the_memory_bound(
    pg15, blank_db, tmp_path, s3_server
):
    bucket = s3_server.create_bucket()
    env = pg15.env(
        blank_db,
        BACKUP_DESTINATIONS=f"s3://{bucket}/memory",
        BACKUP_LOCK_DIR=str(tmp_path),
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_REGION=s3_server.region,
        S3_ENDPOINT_URL=s3_server.endpoint_url,
    )
    _assert_bounded(run_measured("backup", env=env), "backup to s3", S3_BACKUP_BOUND_MIB)
    target = unique_name("blanks_from_s3")
    _assert_bounded(run_measured("restore", "--target-db", target, "--force", env=env), "restore")
    assert _count(pg15, target) == ROWS
