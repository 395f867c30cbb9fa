"""`make demo` is the first thing a newcomer runs: it must work end to end, and show the
command they will type (`pgbackup ...`), including a table brought back alone. What the docs
show it printing is what it prints; `make sandbox` leaves a server to try commands against."""

from __future__ import annotations

import os
import pty
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import clean_environ

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "scripts" / "demo.py"
GETTING_STARTED = REPO / "docs" / "getting-started.md"


def _demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The demo's output as a terminal shows it: its own lines and the jobs' log in order."""
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        env=env or clean_environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )


def _docs_demo_output() -> list[str]:
    """The block under "What `make demo` prints" in the getting-started page."""
    text = GETTING_STARTED.read_text(encoding="utf-8")
    after = text.split("What `make demo` prints", 1)[1]
    return after.split("```\n", 1)[1].split("```", 1)[0].splitlines()


_VARYING = [
    (re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "), ""),  # the log's timestamp
    (re.compile(r"\d{8}T\d{6}Z"), "<stamp>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<date>"),
    (re.compile(r"PostgreSQL \d+(\.\d+)?( \([^)]*\))?"), "PostgreSQL <version>"),
    (re.compile(r"pg_dump \d+(\.\d+)?"), "pg_dump <version>"),
    (re.compile(r"/usr/lib/postgresql/\d+/bin|/\S+/pginstall/bin"), "<bindir>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"/tmp/pgbackup-pg-\w+"), "<datadir>"),
    (re.compile(r"\d+ bytes"), "<n> bytes"),
    (re.compile(r"\d+\.\d+"), "<n>"),  # sizes, ratios, seconds
    (re.compile(r"^[=-]{20,}$"), "<rule>"),
    (re.compile(r"\s+"), " "),  # column widths follow the names
]


def normalized(line: str) -> str:
    for pattern, replacement in _VARYING:
        line = pattern.sub(replacement, line)
    return line.strip()


def missing_from(shown: list[str], printed: list[str]) -> list[str]:
    """The lines of ``shown`` (the docs) that ``printed`` (a real run) does not print, in
    order; a line "..." in the docs stands for lines left out."""
    real = [normalized(line) for line in printed]
    missing = []
    position = 0
    for line in shown:
        want = normalized(line)
        if not want or want == "...":
            continue
        try:
            position = real.index(want, position) + 1
        except ValueError:
            missing.append(line)
    return missing


def test_the_demo_runs_and_prints_what_the_docs_show(tmp_path: Path) -> None:
    destination = f"file://{tmp_path / 'backups'}"
    result = _demo(destination)
    output = result.stdout
    assert result.returncode == 0, output[-3000:]
    for command in ("$ pgbackup backup", "$ pgbackup list", "$ pgbackup restore latest"):
        assert command in output
    assert "restored database matches the original" in output
    assert "shop.audit_log is back" in output
    assert "Traceback" not in output
    assert any((tmp_path / "backups").rglob("*.manifest.json"))
    # output into a pipe: no terminal codes (issue 20: raw \033[1m)
    assert "\033[" not in output
    # the docs' copy, as `make demo` prints it (to ./backups)
    printed = output.replace(destination, "file://./backups").splitlines()
    drifted = missing_from(_docs_demo_output(), printed)
    assert not drifted, "docs/getting-started.md shows lines the demo does not print:\n" + (
        "\n".join(drifted)
    )


def test_the_comparison_finds_a_drifted_line() -> None:
    shown = ["==> list", "INFO    verified x: 1 bytes, sha256 ok, 8 tables in the archive, 0.0 s"]
    printed = [
        "==> list",
        "2026-01-01T00:00:00Z INFO    verified x: 2 bytes, sha256 ok, 9 tables and 1 "
        "materialized view in the archive, 0.1 s",
    ]
    assert missing_from(shown, printed) == [shown[1]]
    assert missing_from(shown[:1], printed) == []


@pytest.mark.parametrize(("no_color", "bold"), [("", True), ("1", False)])
def test_titles_are_bold_only_on_a_terminal_without_no_color(no_color: str, bold: bool) -> None:
    controller, terminal = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-c", "import demo; demo.step('title')"],
            cwd=REPO / "scripts",
            env={**clean_environ(), "NO_COLOR": no_color},
            stdout=terminal,
            timeout=60,
            check=True,
        )
        shown = os.read(controller, 4096).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    assert "==> title" in shown
    assert ("\033[1m" in shown) is bold, repr(shown)


def _exports(output: str) -> dict[str, str]:
    """The environment the printed `export` lines give a shell."""
    env = clean_environ()
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        for assignment in shlex.split(line.removeprefix("export ")):
            name, _, value = assignment.partition("=")
            env[name] = value.replace("$PATH", env.get("PATH", ""))
    return env


def test_the_sandbox_stays_up_for_your_own_commands_until_stopped(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    backups = tmp_path / "backups"
    started = _demo("--sandbox", "--state", str(state), f"file://{backups}")
    output = started.stdout
    assert started.returncode == 0, output[-3000:]
    assert state.exists()
    assert "stopping the throwaway PostgreSQL" not in output
    assert f"--stop --state {state}" in output  # how to stop it (make sandbox-stop by default)
    env = _exports(output)
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "BACKUP_DESTINATIONS"):
        assert env.get(name), (name, output[-1500:])
    assert env["BACKUP_DESTINATIONS"] == f"file://{backups}"
    try:
        pgbackup = shutil.which("pgbackup", path=env["PATH"])
        assert pgbackup, env["PATH"]
        listed = subprocess.run(
            ["pgbackup", "list"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert listed.returncode == 0, listed.stderr
        assert "Total: 1 backup" in listed.stdout and "shop-" in listed.stdout
    finally:
        stopped = _demo("--stop", "--state", str(state))
    assert stopped.returncode == 0, stopped.stdout
    assert "stopped the sandbox's PostgreSQL" in stopped.stdout
    assert not state.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=env["PGHOST"],
            port=env["PGPORT"],
            user=env["PGUSER"],
            password=env["PGPASSWORD"],
            dbname="shop",
            connect_timeout=5,
        ).close()
    assert any(backups.rglob("*.manifest.json"))  # the backups stay
    again = _demo("--stop", "--state", str(state))
    assert again.returncode == 0 and "no sandbox is running" in again.stdout
