"""What a newcomer meets on a first try (issue 20): the real names, counts that agree, the
right hint, output without terminal codes when it is not a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO, clean_environ, run_job, unique_name


def test_restore_dry_run_names_the_database_it_will_keep(pg15, sample_db, job_env):
    """The confirmation and --dry-run name the real <db>_pre_restore_<stamp>, and the swap
    uses that name."""
    assert run_job("backup", env=job_env).returncode == 0
    dry = run_job("restore", "--dry-run", env=job_env)
    assert dry.returncode == 0, dry.output
    assert "<db>" not in dry.stdout and "<timestamp>" not in dry.stdout
    named = re.search(rf"renamed ({sample_db}_pre_restore_\d{{8}}T\d{{6}}Z)\.", dry.stdout)
    assert named, dry.stdout
    assert named.group(1) not in pg15.databases()

    restored = run_job("restore", "--force", env=job_env)
    assert restored.returncode == 0, restored.output
    kept = [d for d in pg15.databases() if d.startswith(f"{sample_db}_pre_restore_")]
    assert len(kept) == 1
    assert f"previous database kept as {kept[0]}" in restored.stderr
    pg15.execute("postgres", f'DROP DATABASE "{kept[0]}"')


def test_verify_and_the_test_restore_count_the_same_tables(pg15, sample_db, job_env):
    """The sample holds a partitioned table (no rows of its own: no TABLE DATA entry) and a
    materialized view: verify and verify --restore-test say the same number of tables, and
    name the view apart."""
    assert run_job("backup", env=job_env).returncode == 0
    result = run_job("verify", "--restore-test", env=job_env)
    assert result.returncode == 0, result.output
    archive = re.search(r"sha256 ok, (\d+) tables and 1 materialized view in", result.stderr)
    present = re.search(r"passed: (\d+) tables present", result.stderr)
    assert archive and present, result.stderr
    assert archive.group(1) == present.group(1)


def test_verify_says_one_table_without_a_view(pg15, job_env):
    database = unique_name("one")
    pg15.create_database(database)
    pg15.execute(database, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    env = {**job_env, "PGDATABASE": database}
    assert run_job("backup", env=env).returncode == 0
    result = run_job("verify", "--restore-test", env=env)
    assert result.returncode == 0, result.output
    assert "sha256 ok, 1 table in the archive" in result.stderr


def _without_root_powers(*args: str) -> list[str]:
    """``args`` run as root without the capability to bypass file permissions: a folder of
    mode 0555 refuses it as it refuses uid 10001 in the image."""
    return [
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
        "--",
        *args,
    ]


def test_a_local_permission_denied_names_the_folder_and_the_image_uid(job_env, tmp_path):
    folder = tmp_path / "pg-backups"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)
    env = {**clean_environ(), **job_env, "BACKUP_DESTINATIONS": f"file://{folder}"}
    for command in ("backup", "check"):
        done = subprocess.run(
            _without_root_powers(sys.executable, str(REPO / "entrypoint.py"), command),
            env={**env, "BACKUP_PROGRESS_SECONDS": "0"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 4, done.stderr
        [hint] = [line for line in done.stderr.splitlines() if line.startswith("hint: ")]
        assert f"hint: {folder} is not writable by uid {os.getuid()}" in hint
        assert "uid 10001" in hint and "chown -R 10001:10001" in hint and "--user" in hint
        assert "bucket" not in hint and "credentials" not in hint
