"""The layers of docs/architecture.md hold: import-linter's contracts in pyproject.toml pass on
the code as it is, and fail when a lower layer imports a higher one or a cycle appears."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports", path=str(REPO / ".venv" / "bin")) or shutil.which(
    "lint-imports"
)

pytestmark = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS is not None
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_code(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "backup", tmp_path / "backup", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_is_refused(tmp_path: Path) -> None:
    root = copy_of_the_code(tmp_path)
    with open(root / "backup" / "storage" / "local.py", "a") as module:
        module.write("\nfrom backup import manifest  # noqa: E402, F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "backup.storage is not allowed to import backup.manifest" in result.stdout
    assert "backup.storage.local -> backup.manifest" in result.stdout


def test_a_module_outside_every_layer_is_refused(tmp_path: Path) -> None:
    root = copy_of_the_code(tmp_path)
    (root / "backup" / "helpers.py").write_text('"""A module nobody placed in a layer."""\n')
    result = lint_imports(root)
    assert result.returncode != 0
    assert "helpers" in result.stdout
