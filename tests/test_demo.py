"""`make demo` is the first thing a newcomer runs: it must work end to end, and show the
command they will type (`pgbackup ...`), including a table brought back alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_environ

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_runs_and_shows_the_pgbackup_commands(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), f"file://{tmp_path / 'backups'}"],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for command in ("$ pgbackup backup", "$ pgbackup list", "$ pgbackup restore latest"):
        assert command in output
    assert "restored database matches the original" in output
    assert "shop.audit_log is back" in output
    assert "Traceback" not in output
    assert any((tmp_path / "backups").rglob("*.manifest.json"))
