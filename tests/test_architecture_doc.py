"""docs/architecture.md is held true (issue 20): its map of the tree names every module and
package of ``backup/`` and nothing that does not exist, and its table of layers is the one
import-linter enforces (pyproject.toml). A commit that moves a responsibility updates the map,
or this test fails."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
ENTRY = re.compile(r"^( {0,6})([A-Za-z_][\w]*(?:\.py|/))(?:\s|$)")
INLINE_MODULE = re.compile(r"\b([a-z_][a-z0-9_]*\.py)\b")
INLINE_PACKAGE = re.compile(r"(?<![\w/.])([a-z_][a-z0-9_]*/)(?=[\s:,)]|$)")


def _tree_block() -> list[str]:
    section = DOC.split("## What each folder and module owns", 1)[1]
    block = section.split("```", 2)[1]
    return block.splitlines()[1:]


def documented_paths() -> set[str]:
    """Paths relative to ``backup/`` the map names: ``x.py`` or ``pkg/`` entries by their
    indentation, and a package's modules named inline in its own description."""
    paths: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, package path ending in /)
    current: str | None = None
    for line in _tree_block():
        match = ENTRY.match(line)
        if match and match.group(2) != "backup/":
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            current = parent + match.group(2)
            paths.add(current)
            if current.endswith("/"):
                stack.append((indent, current))
            text = line[match.end() :]
        else:
            text = line
        if current and current.endswith("/"):
            for name in INLINE_MODULE.findall(text):
                paths.add(current + name)
            for name in INLINE_PACKAGE.findall(text):
                paths.add(current + name)
    return paths


def actual_paths() -> set[str]:
    root = REPO / "backup"
    paths = set()
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if path.name != "__init__.py":
            paths.add(relative)
        if path.parent != root:
            paths.add(path.parent.relative_to(root).as_posix() + "/")
    return paths


def test_the_map_names_every_module_and_package() -> None:
    missing = sorted(actual_paths() - documented_paths())
    assert not missing, (
        f"docs/architecture.md does not say what these own: {missing}; add them to "
        "'What each folder and module owns'"
    )


def test_the_map_names_nothing_that_does_not_exist() -> None:
    root = REPO / "backup"
    stale = sorted(path for path in documented_paths() if not (root / path).exists())
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"


def test_the_layers_table_is_the_one_import_linter_enforces() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    [layers] = [c["layers"] for c in contracts if c["type"] == "layers"]
    enforced = [sorted(part.strip() for part in layer.split("|")) for layer in layers]
    section = DOC.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    documented = [sorted(re.findall(r"`([\w.]+)`", row.split("|")[2])) for row in rows]
    assert documented == enforced


def test_every_path_the_page_names_exists() -> None:
    """The "Where is ...?" table and the prose name files by path: each one exists."""
    named = set(re.findall(r"`(backup/[\w/]+\.py)`", DOC)) | set(
        re.findall(r"`((?:tests|scripts|bench|deploy)/[\w/.-]+)`", DOC)
    )
    stale = sorted(path for path in named if "<" not in path and not (REPO / path).exists())
    assert not stale, f"docs/architecture.md names files that do not exist: {stale}"


MAX_MODULE_LINES = 400


def test_no_module_is_past_400_lines() -> None:
    """STYLE.md: "a module past ~400 lines is two modules" (the tree shows the architecture)."""
    long = {
        path.relative_to(REPO).as_posix(): lines
        for path in (REPO / "backup").rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules by responsibility (and update the map): {long}"


def _modules() -> dict[str, list[str]]:
    """Every module of ``backup/`` by its last name (``reuse`` -> ``backup.dump.reuse``)."""
    found: dict[str, list[str]] = {}
    for path in (REPO / "backup").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.setdefault(dotted.rsplit(".", 1)[-1], []).append(dotted)
    return found


REFERENCE = re.compile(r"(?<![\w./-])([a-z_][a-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?![\w/-])")
NOT_NAMES = {"py", "json", "dat", "key", "partial", "toml", "yml", "yaml", "md", "sh", "txt"}


def test_every_module_function_the_page_names_exists() -> None:
    """``dump.backup_database``, ``reuse.still_whole``, ``restore/steps.swap``: each reference
    to a module's member (or a package's module) names one that exists, so the map does not
    drift when code moves or is renamed."""
    import importlib

    modules = _modules()
    stale = []
    for text in re.findall(r"`[^`]+`|[^`]+", DOC):
        for ref in REFERENCE.findall(text):
            head, *attrs = ref.split(".")
            if head not in modules or not attrs or attrs[0] in NOT_NAMES:
                continue
            ok = False
            for dotted in modules[head]:
                target: object = importlib.import_module(dotted)
                for attr in attrs:
                    sub = f"{getattr(target, '__name__', '')}.{attr}"
                    if hasattr(target, attr):
                        target = getattr(target, attr)
                    elif (REPO / Path(*sub.split("."))).with_suffix(".py").exists() or (
                        REPO / Path(*sub.split(".")) / "__init__.py"
                    ).exists():
                        target = importlib.import_module(sub)
                    else:
                        break
                else:
                    ok = True
                    break
            if not ok:
                stale.append(ref)
    assert not stale, f"docs/architecture.md names members that do not exist: {sorted(set(stale))}"
