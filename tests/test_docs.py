"""The docs site (mkdocs.yml, docs/) builds with --strict: no broken link or anchor, no page
missing from the navigation. Its two reference pages are generated from the code's own tables
(scripts/docs_reference.py, a mkdocs hook), so every variable and every option is on them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backup import cli, commands
from backup.config import variables

REPO = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_the_site_builds_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in REPO.joinpath("docs").rglob("*.md"):
        built = site / page.relative_to(REPO / "docs").with_suffix(".html")
        assert built.is_file(), f"{page} was not built"


def test_every_variable_is_on_the_environment_page(site: Path) -> None:
    page = (site / "reference" / "environment.html").read_text(encoding="utf-8")
    assert "generated:" not in page
    missing = sorted(name for name in variables.names() if f"<code>{name}</code>" not in page)
    assert not missing, f"not on the generated environment page: {missing}"


def test_every_command_and_option_is_on_the_cli_page(site: Path) -> None:
    page = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    assert "generated:" not in page
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(sub.choices) == list(commands.COMMANDS)
    for name, command in sub.choices.items():
        assert f'id="{name}"' in page, name
        for action in command._actions:
            for option in action.option_strings:
                assert option in page, f"{name} {option}"


README = REPO / "README.md"


def _table(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    assert text.index("```sh\n") < text.index("\n## "), "the commands come before any section"
    assert first_block.startswith("make demo")
    assert "\nmake test" in first_block


def test_readme_and_the_reference_have_the_same_exit_codes() -> None:
    """The exit codes are part of README's contract; the reference page holds the same table."""
    header = "| code | meaning |"
    readme = _table(README.read_text(encoding="utf-8"), header)
    page = _table(
        (REPO / "docs" / "reference" / "exit-codes.md").read_text(encoding="utf-8"), header
    )
    assert len(readme) >= 11
    assert readme == page


def test_readme_links_into_the_docs_resolve() -> None:
    """README's relative links (they work on GitHub): each names a docs page that exists and,
    with an anchor, a heading of that page."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", text)
    assert len(links) >= 10
    for path, anchor in links:
        page = REPO / path
        assert page.is_file(), path
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
            slugs = {
                re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings
            }
            assert anchor in slugs, f"{path}#{anchor}"
