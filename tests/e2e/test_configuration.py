"""Configuration refusals through the CLI: nothing runs, nothing is written, exit 2."""

from __future__ import annotations

import pytest

from tests.conftest import run_job
from tests.e2e.helpers import visible_files


@pytest.mark.parametrize("command", ["backup", "check", "status", "prune"])
def test_no_database_named_is_exit_2_naming_the_three_ways(command, job_env, backup_dir):
    env = {k: v for k, v in job_env.items() if k != "PGDATABASE"}
    result = run_job(command, env=env)
    assert result.returncode == 2, result.output
    assert "no database to back up is named" in result.stderr
    for way in ("BACKUP_DATABASES", "PGDATABASE", "DATABASE_URL"):
        assert way in result.stderr
    assert "Traceback" not in result.output
    assert visible_files(backup_dir) == []


def test_commands_that_name_their_backup_need_no_database(job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    database = job_env["PGDATABASE"]
    env = {k: v for k, v in job_env.items() if k != "PGDATABASE"}
    listing = run_job("list", env=env)
    assert listing.returncode == 0, listing.output
    assert database in listing.stdout
    verify = run_job("verify", "latest", "--database", database, env=env)
    assert verify.returncode == 0, verify.output


def test_a_manifest_named_with_an_impossible_date_is_flagged_not_a_crash(tmp_path):
    destination = tmp_path / "backups"
    (destination / "shop").mkdir(parents=True)
    (destination / "shop" / "shop-20250191T129900Z.manifest.json").write_text("{}")
    env = {"BACKUP_DESTINATIONS": f"file://{destination}", "BACKUP_LOCK_DIR": str(tmp_path)}
    for args in (("list",), ("list", "--json")):
        result = run_job(*args, env=env)
        assert result.returncode == 0, result.output
        assert "shop-20250191T129900Z" in result.stdout
        assert "Traceback" not in result.output and "unexpected" not in result.output
