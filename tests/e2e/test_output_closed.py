"""A reader that stops early (``list | head -3``): the job ends quietly with 141, never
"unexpected BrokenPipeError ... this is a bug" (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backup.cli import EXIT_OUTPUT_CLOSED
from tests.conftest import REPO, clean_environ


def _run_into_closed_pipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI with a stdout whose reader has already gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, str(REPO / "entrypoint.py"), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**clean_environ(), **env},
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


def _many_flagged_manifests(root: Path) -> None:
    """Enough rows for ``list`` to write more than its buffer while it runs."""
    folder = root / "shop"
    folder.mkdir(parents=True)
    for day in range(10, 29):
        for hour in range(10, 21):
            (folder / f"shop-202501{day}T{hour}0000Z.manifest.json").write_text("{not json")


@pytest.mark.parametrize(
    ("args", "many"),
    [(("list",), False), (("list",), True), (("list", "--json"), True)],
    ids=["list-at-exit", "list-while-printing", "list-json-while-printing"],
)
def test_closed_stdout_ends_quietly(tmp_path: Path, args: tuple[str, ...], many: bool) -> None:
    if many:
        _many_flagged_manifests(tmp_path)
    env = {"BACKUP_DESTINATIONS": f"file://{tmp_path}", "PGDATABASE": "shop"}
    result = _run_into_closed_pipe(*args, env=env)
    assert result.returncode == EXIT_OUTPUT_CLOSED, result.stderr
    assert result.stderr == ""


def test_a_failure_keeps_its_code_when_the_output_is_cut(tmp_path: Path) -> None:
    # status finds untrustworthy manifests (exit 1) and says why on stderr; the cut output
    # does not hide that.
    _many_flagged_manifests(tmp_path)
    env = {"BACKUP_DESTINATIONS": f"file://{tmp_path}", "PGDATABASE": "shop"}
    result = _run_into_closed_pipe("status", "--json", env=env)
    assert result.returncode == 1, result.stderr
    assert "error: " in result.stderr and "not trustworthy" in result.stderr
    assert "BrokenPipe" not in result.stderr and "Traceback" not in result.stderr


def test_help_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    result = _run_into_closed_pipe("list", "--help", env={})
    assert (result.returncode, result.stderr) == (0, "")
