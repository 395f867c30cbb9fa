"""The `pgbackup` command that `pip install .` puts on PATH (the image's entrypoint) runs the same
main as `python entrypoint.py`, and says its own name in --help, --version and the manual
command of a notification; the project's licence is MIT, in LICENSE."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from backup import __version__, cli
from tests.conftest import REPO, clean_environ

PGBACKUP = Path(sys.executable).parent / "pgbackup"


def _pgbackup(*args: str) -> subprocess.CompletedProcess:
    if not PGBACKUP.exists():
        pytest.fail(
            f"no {PGBACKUP}: install the project into this venv (make deps, pip install -e .)"
        )
    return subprocess.run(
        [str(PGBACKUP), *args],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pyproject_declares_the_command_and_the_licence():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"pgbackup": "backup.cli:main"}
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 the pgbackup-job authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in licence


def test_version_names_the_job_python_and_the_client_tools():
    result = _pgbackup("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"pgbackup-job {__version__}"  # first line: for scripts
    assert lines[1].startswith("Python 3.")
    assert lines[2].startswith("PostgreSQL client tools: ")
    assert "/bin)" in lines[2] or lines[2].endswith("none found")


def test_help_says_pgbackup():
    result = _pgbackup("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pgbackup [-h] [--version] COMMAND ...")
    assert "'pgbackup COMMAND --help'" in result.stdout
    verb = _pgbackup("list", "--help")
    assert verb.returncode == 0 and verb.stdout.startswith("usage: pgbackup list")


def test_entrypoint_py_still_says_its_own_name():
    result = subprocess.run(
        [sys.executable, str(REPO / "entrypoint.py"), "--help"],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: entrypoint.py")
    assert "'entrypoint.py COMMAND --help'" in result.stdout


def test_python_dash_m_backup_is_the_same_command():
    """`python -m backup` where the console script is not on PATH (issue 20: it failed)."""
    for args in (["--help"], ["list", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "backup", *args],
            env=clean_environ(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: pgbackup {' '.join(args[:-1])}".rstrip())
    version = subprocess.run(
        [sys.executable, "-m", "backup", "--version"],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.stdout.startswith(f"pgbackup-job {__version__}\n"), version.stderr


def test_bad_usage_is_exit_2_without_a_traceback():
    for args in (["no-such-command"], ["--no-such-option"], ["list", "--bogus"]):
        result = _pgbackup(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("usage: pgbackup")
        assert "Traceback" not in result.stderr


def test_a_configuration_error_is_exit_2_and_names_the_variable():
    env = {**clean_environ(), "BACKUP_RETENTION_DAYS": "soon"}
    result = subprocess.run(
        [str(PGBACKUP), "list"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "BACKUP_RETENTION_DAYS" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv0",
    ["/opt/venv/bin/pgbackup", "entrypoint.py", "/app/entrypoint.py", "/x/backup/__main__.py"],
)
def test_the_manual_command_is_always_pgbackup(monkeypatch, argv0):
    """Notifications tell the command users type (issue 20), however this run was started."""
    monkeypatch.setattr(sys, "argv", [argv0])
    expected = "pgbackup verify latest --restore-test"
    assert cli._manual_command(["verify", "latest", "--restore-test"]) == expected
