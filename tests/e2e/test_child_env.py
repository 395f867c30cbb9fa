"""Child processes see a minimal environment: the libpq variables and the password only where
they connect, no secret of the job anywhere else (issue 11)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import REAL_BIN

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-that-no-child-needs",
    "B2_KEY_ID": "0012345678",
    "B2_APPLICATION_KEY": "b2-key-that-no-child-needs",
    "UNRELATED_VARIABLE": "not-for-children",
}


def _recording_tools(directory: Path, record: Path) -> Path:
    """pg_dump and pg_restore that write their arguments and environment to ``record`` (one
    file per call), then run the real tool."""
    directory.mkdir(parents=True, exist_ok=True)
    record.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        script = directory / tool
        script.write_text(
            "#!/bin/sh\n"
            f"out={record}/{tool}-$$\n"
            'echo "$@" > "$out.argv"\n'
            'env > "$out.env"\n'
            f'exec {REAL_BIN}/{tool} "$@"\n'
        )
        script.chmod(0o755)
    for tool in ("psql", "pg_dumpall"):
        (directory / tool).symlink_to(REAL_BIN / tool)
    return directory


def _calls(record: Path, tool: str) -> list[tuple[str, dict[str, str]]]:
    """(argv, environment) of each recorded call of ``tool``."""
    calls = []
    for argv_file in sorted(record.glob(f"{tool}-*.argv")):
        env_file = argv_file.with_suffix(".env")
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        calls.append((argv_file.read_text().strip(), env))
    return calls


def _connecting(env: dict[str, str]) -> bool:
    return any(name in env for name in ("PGPASSWORD", "PGHOST", "PGPORT", "PGUSER"))


def _leaked(env: dict[str, str], job_env: dict[str, str]) -> list[str]:
    """Which of the job's secrets (and unrelated variables) reached this child."""
    return [name for name, value in SECRETS.items() if name in env or value in env.values()] + [
        "PGPASSWORD" for value in env.values() if value == job_env["PGPASSWORD"]
    ]


def test_children_see_only_what_they_need(job_env, tmp_path, pg15):
    record = tmp_path / "record"
    bindir = _recording_tools(tmp_path / "bin", record)
    env = {
        **job_env,
        **SECRETS,
        "PGSSLMODE": "disable",
        "BACKUP_PG_BIN_DIRS": str(bindir),
    }
    assert run_job("backup", env=env).returncode == 0
    assert run_job("verify", "latest", env=env).returncode == 0
    target = unique_name("restored")
    restored = run_job("restore", "latest", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output

    dumps = _calls(record, "pg_dump")
    probes = [env for argv, env in dumps if argv == "--version"]
    dumping = [(argv, env) for argv, env in dumps if argv != "--version"]
    assert probes and dumping
    for probe in probes:  # the version probe: nothing of the job's at all
        assert not _connecting(probe) and "PGSSLMODE" not in probe, sorted(probe)
        assert _leaked(probe, job_env) == [], sorted(probe)
    for argv, child in dumping:  # the dump connects: libpq's variables, no other secret
        assert "-Fc" in argv
        assert child["PGPASSWORD"] == job_env["PGPASSWORD"]
        assert child["PGHOST"] == job_env["PGHOST"] and child["PGSSLMODE"] == "disable"
        assert [name for name in SECRETS if name in child] == []

    restores = _calls(record, "pg_restore")
    listing = [env for argv, env in restores if "--list" in argv.split()]
    into_db = [env for argv, env in restores if "--dbname" in argv or " -d " in f" {argv} "]
    assert listing and into_db, [argv for argv, _ in restores]
    for child in listing:  # reads an archive, connects nowhere
        assert not _connecting(child) and "PGSSLMODE" not in child, sorted(child)
        assert _leaked(child, job_env) == [], sorted(child)
    for child in into_db:
        assert child["PGPASSWORD"] == job_env["PGPASSWORD"]
        assert [name for name in SECRETS if name in child] == []
