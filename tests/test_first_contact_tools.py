"""The tools a newcomer runs first (issue 20): `make help`, the install step `make demo` runs
every time, a fresh `pip install .`, and the command every shipped text tells them to type."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from tests.conftest import clean_environ

REPO = Path(__file__).resolve().parent.parent


def _project_copy(dest: Path) -> Path:
    """What `pip install .` reads, and the install script, in a folder of their own."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "entrypoint.py"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "backup", dest / "backup", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "install-deps.sh", dest / "scripts" / "install-deps.sh")
    return dest


def _venv_borrowing_dependencies(path: Path) -> Path:
    """A new venv that sees this venv's installed packages (a .pth file adds their folder), so
    `pip install .` finds the dependencies installed and builds and installs only the project
    itself (this machine reaches no package index fast enough to install them all in a test).
    The project is not visible through it: that folder's own .pth files (this checkout's
    editable install) are not read. Its pip is this venv's, run as `python -m pip`."""
    venv.EnvBuilder(with_pip=False).create(path)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(path), "platbase": str(path)}))
    (purelib / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = path / "bin" / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{path}/bin/python" -m pip "$@"\n')
    pip.chmod(0o755)
    return path


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=clean_environ(), capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_the_install_step_runs_once_per_pyproject(tmp_path: Path) -> None:
    """`make demo` runs scripts/install-deps.sh runtime every time: the second time it installs
    nothing and prints nothing; a changed pyproject.toml installs again. No setuptools
    deprecation box (the SPDX license string needs setuptools 77)."""
    project = _project_copy(tmp_path / "project")
    _venv_borrowing_dependencies(project / ".venv")

    def install() -> str:
        done = _run(["bash", "scripts/install-deps.sh", "runtime"], project)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    first = install()
    stamp = project / ".venv" / ".installed-runtime"
    assert stamp.exists(), first
    assert "Deprecat" not in first and "deprecat" not in first, first
    assert (project / ".venv" / "bin" / "pgbackup").exists()
    written = stamp.stat().st_mtime_ns

    assert install() == ""  # nothing to do: nothing said
    assert stamp.stat().st_mtime_ns == written

    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# changed\n")
    install()
    assert stamp.stat().st_mtime_ns != written


def test_the_pyproject_declares_its_license_as_setuptools_77_reads_it() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"  # SPDX, not the deprecated table
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    [setuptools] = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum and int(minimum.group(1)) >= 77, setuptools


@pytest.mark.slow
def test_a_fresh_venv_gets_the_pgbackup_command(tmp_path: Path) -> None:
    """`pip install .` (a real wheel, not the editable install) into a new venv: the
    `pgbackup` command and `python -m backup` work there, from any folder (issue 20: no
    command, and `python -m backup` failed)."""
    project = _project_copy(tmp_path / "project")
    env = _venv_borrowing_dependencies(tmp_path / "venv")
    built = _run([str(env / "bin" / "pip"), "install", "-q", str(project)], tmp_path)
    assert built.returncode == 0, built.stderr
    assert "eprecat" not in built.stdout + built.stderr, built.stderr
    shutil.rmtree(project)  # nothing may come from the source folder
    for argv in (
        [str(env / "bin" / "pgbackup"), "--help"],
        [str(env / "bin" / "python"), "-m", "backup", "--help"],
        [str(env / "bin" / "pgbackup"), "list", "--help"],
    ):
        done = _run(argv, Path("/"))
        assert done.returncode == 0, (argv, done.stderr)
        assert done.stdout.startswith("usage: pgbackup"), (argv, done.stdout[:200])
    where = _run(
        [str(env / "bin" / "python"), "-c", "import backup; print(backup.__file__)"], Path("/")
    )
    assert where.stdout.startswith(str(env)), where.stdout


# The alias is named where the docs say it still works, and where the code keeps it.
_ALIAS_NOTES = {
    "docs/deployment/container-image.md": "still there",
    "docs/deployment/railway.md": "still works",
    "backup/cli.py": "older deployments",
}


def test_every_shipped_text_says_pgbackup() -> None:
    """Notifications, hints, --help, README, docs, k8s, compose and Railway tell users to type
    `pgbackup ...`, never `python entrypoint.py ...` (issue 20)."""
    files = [REPO / "README.md", REPO / "docker-compose.yml", REPO / "railway.toml"]
    for folder, pattern in (
        ("docs", "*.md"),
        ("k8s", "*"),
        ("compose", "*"),
        ("deploy", "*"),
        (".github/workflows", "*"),
        ("backup", "*.py"),
    ):
        files += [f for f in sorted((REPO / folder).rglob(pattern)) if f.is_file()]
    found = []
    for path in files:
        name = path.relative_to(REPO).as_posix()
        lines = path.read_text(errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            if not re.search(r"python3?\s+(?:/app/)?entrypoint\.py", line):
                continue
            note = _ALIAS_NOTES.get(name)
            if note and note in " ".join(lines[number - 2 : number + 1]):
                continue
            found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "say `pgbackup ...`:\n" + "\n".join(found)


def test_help_of_every_command_says_pgbackup(monkeypatch, capsys) -> None:
    from backup import cli, commands

    monkeypatch.setattr(sys, "argv", ["/opt/venv/bin/pgbackup"])
    for args in ([], *([name] for name in commands.COMMANDS)):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([*args, "--help"])
        text = capsys.readouterr().out
        assert text.startswith(" ".join(["usage: pgbackup", *args])), text[:100]
        assert "entrypoint" not in text, args


def test_make_help_lists_every_target_with_what_it_does() -> None:
    """`make help` (and `make` alone) lists every target of the Makefile, one line each."""
    makefile = (REPO / "Makefile").read_text()
    phony = {t for line in re.findall(r"^\.PHONY:(.*)$", makefile, re.M) for t in line.split()}
    for argv in (["make", "-s", "help"], ["make", "-s"]):
        done = _run(argv, REPO)
        assert done.returncode == 0, done.stderr
        listed = dict(re.findall(r"^  make (\S+) +(\S.*)$", done.stdout, re.M))
        assert set(listed) == phony, done.stdout
        for target in ("demo", "test", "sandbox", "sandbox-stop"):
            assert len(listed[target]) > 10, target
