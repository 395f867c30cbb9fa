"""Progress of restore and verify: a log line every BACKUP_PROGRESS_SECONDS with the bytes read
of the manifest's size, the percent, the rate and the time left, from whichever thread reads
the download (streaming restore, --jobs spool, verify's decode pass, the test restore)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import run_job, unique_name

# "restore shop-...: 1.2 of 6.3 MB read (19%), 40.1 MB/s, about 1 s left"
LINE = r"{what} {name}: [0-9.]+ of [0-9.]+ MB read \([0-9]+%\), [0-9.]+ MB/s"


@pytest.fixture(scope="module")
def several_mb(pg15, tmp_path_factory):
    """A backup of a few MB that compresses badly (md5 text), so reading it takes many reads."""
    name = unique_name("progress")
    pg15.create_database(name)
    pg15.execute(
        name,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) "
        "|| md5((g * 13)::text) AS filler FROM generate_series(1, 120000) g",
    )
    directory = tmp_path_factory.mktemp("progress")
    env = pg15.env(
        name,
        BACKUP_DESTINATIONS=f"file://{directory / 'backups'}",
        BACKUP_LOCK_DIR=str(directory),
    )
    made = run_job("backup", env=env)
    assert made.returncode == 0, made.output
    listed = run_job("list", "--json", env=env)
    backup = json.loads(listed.stdout)[0]
    assert backup["size_bytes"] > 3_000_000, backup
    yield name, backup["name"], env
    pg15.execute("postgres", f'DROP DATABASE IF EXISTS "{name}"')


def _lines(stderr: str, what: str, name: str) -> list[str]:
    return re.findall(LINE.format(what=re.escape(what), name=re.escape(name)), stderr)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_restore_logs_progress_with_the_percent(pg15, several_mb, jobs):
    _, backup, env = several_mb
    target = unique_name("progress_restored")
    result = run_job(
        "restore",
        "--target-db",
        target,
        "--force",
        "--jobs",
        jobs,
        env={**env, "BACKUP_PROGRESS_SECONDS": "0.001"},
    )
    assert result.returncode == 0, result.output
    pg15.execute("postgres", f'DROP DATABASE "{target}"')
    assert _lines(result.stderr, "restore", backup), result.stderr


def test_verify_and_its_test_restore_log_progress(several_mb):
    _, backup, env = several_mb
    result = run_job("verify", "--restore-test", env={**env, "BACKUP_PROGRESS_SECONDS": "0.001"})
    assert result.returncode == 0, result.output
    assert _lines(result.stderr, "verify", backup), result.stderr
    assert _lines(result.stderr, "test restore", backup), result.stderr


def test_no_progress_lines_when_it_is_off(pg15, several_mb):
    _, _, env = several_mb
    result = run_job("verify", env={**env, "BACKUP_PROGRESS_SECONDS": "0"})
    assert result.returncode == 0, result.output
    assert "MB read" not in result.stderr, result.stderr


def test_a_directory_backup_logs_progress_of_all_its_files(pg15, several_mb):
    _, _, env = several_mb
    env = {**env, "BACKUP_FORMAT": "directory", "BACKUP_JOBS": "2"}
    made = run_job("backup", env=env)
    assert made.returncode == 0, made.output
    backup = next(
        e["name"]
        for e in json.loads(run_job("list", "--json", env=env).stdout)
        if e["format"] == "directory"
    )
    fast = {**env, "BACKUP_PROGRESS_SECONDS": "0.001"}
    target = unique_name("progress_dir")
    restored = run_job("restore", backup, "--target-db", target, "--force", env=fast)
    assert restored.returncode == 0, restored.output
    pg15.execute("postgres", f'DROP DATABASE "{target}"')
    assert _lines(restored.stderr, "restore", backup), restored.stderr
    verified = run_job("verify", backup, "--restore-test", env=fast)
    assert verified.returncode == 0, verified.output
    assert _lines(verified.stderr, "verify", backup), verified.stderr
    assert _lines(verified.stderr, "test restore", backup), verified.stderr
