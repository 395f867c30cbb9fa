"""No function over 80 lines in the engines (issue 24): a long function tangles several jobs,
so one that must stay long says why in a ``# long:`` comment on its ``def`` line or the line
above it (above its decorators). Pure code: the sources are parsed, nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINES = ("dump", "restore", "verify", "retention", "dirformat")
MAX_LINES = 80


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function (methods and nested ones too) longer than
    ``MAX_LINES`` lines without a ``# long:`` comment saying why."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        assert node.end_lineno is not None
        length = node.end_lineno - node.lineno + 1
        if length <= MAX_LINES:
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        said = [lines[top - 2] if top >= 2 else "", lines[node.lineno - 1]]
        if not any("# long:" in line for line in said):
            found.append((node.name, node.lineno, length))
    return found


def test_no_engine_function_is_long_without_saying_why():
    offenders = []
    for engine in ENGINES:
        for path in sorted((REPO / "backup" / engine).rglob("*.py")):
            for name, line, length in long_functions(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(REPO)}:{line} {name} ({length} lines)")
    assert not offenders, (
        f"engine functions over {MAX_LINES} lines: split them by responsibility, or say why "
        f"one must be long in a '# long:' comment above its def: {offenders}"
    )


def _function(lines: int, comment: str = "", decorated: bool = False) -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(lines - 1))
    return f"{comment}\n" + ("@decorator\n" if decorated else "") + f"def f():\n{body}"


def test_the_rule_counts_lines_and_reads_the_comment():
    assert long_functions(_function(MAX_LINES)) == []
    assert long_functions(_function(MAX_LINES + 1)) == [("f", 2, MAX_LINES + 1)]
    assert long_functions(_function(MAX_LINES + 1, "# long: one SQL script, read as one")) == []
    assert long_functions(_function(MAX_LINES + 1, "# long: why", decorated=True)) == []
    assert long_functions(_function(MAX_LINES + 1, "# a comment")) != []
