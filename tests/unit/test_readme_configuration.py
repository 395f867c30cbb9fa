"""The configuration table (docs/configuration.md, once README's) lists every environment
variable the code reads, and no other.

The names are collected from the source of every ``backup/**/*.py`` file, wherever the parsing
lives: the ``Reader`` calls (``r.str("NAME")``, ``r.secret("NAME")``, ...), the
``LIBPQ_PASSTHROUGH`` tuple and direct ``env.get("NAME")`` reads.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "backup"
# The page that holds the table (README links to it); the tests keep their README names.
README = REPO / "docs" / "configuration.md"

NAME = r"[A-Z][A-Z0-9_]*"
READER_CALL = re.compile(
    rf"\.(?P<method>str|secret|int|float|choice|bool|csv|duration)\(\s*\"(?P<name>{NAME})\""
)
DIRECT_READ = re.compile(
    rf"(?:\benv\.get\(|\benviron\.get\(|\bgetenv\(|\benv\[|\benviron\[)\s*\"(?P<name>{NAME})\""
)
PASSTHROUGH = re.compile(r"\bLIBPQ_PASSTHROUGH\b[^=\n]*=\s*\((?P<body>[^)]*)\)")
STRING = re.compile(rf"\"({NAME})\"")

# Documented in the table although the configuration never reads them: the reason is the row.
NOT_CONFIGURATION = {"TMPDIR"}  # Python's tempfile (restore --jobs N); passed on to children


def _sources() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def read_by_code() -> tuple[set[str], set[str]]:
    """(every variable name the code reads, the subset read as secrets)."""
    names: set[str] = set()
    secrets: set[str] = set()
    for text in _sources().values():
        for match in READER_CALL.finditer(text):
            names.add(match["name"])
            if match["method"] == "secret":
                secrets.add(match["name"])
        names.update(match["name"] for match in DIRECT_READ.finditer(text))
        for match in PASSTHROUGH.finditer(text):
            names.update(STRING.findall(match["body"]))
    return names, secrets


def configuration_rows() -> list[list[str]]:
    """The cells of each table row (header and separator excluded) of the Configuration page's
    first section (before its first ``##`` heading)."""
    text = README.read_text(encoding="utf-8")
    end = text.find("\n## ")
    section = text[: end if end != -1 else len(text)]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "variable" or set(cells[0]) <= set("-: "):
            continue
        rows.append(cells)
    return rows


def documented() -> set[str]:
    """The backquoted names in the first column (the variable column) of the table."""
    return {name for cells in configuration_rows() for name in re.findall(rf"`({NAME})`", cells[0])}


def test_the_scan_finds_the_configuration():
    names, secrets = read_by_code()
    assert len(names) >= 40, sorted(names)
    assert {"BACKUP_DESTINATIONS", "PGPASSWORD", "BACKUP_LOCK_DIR", "PGSSLMODE"} <= names
    assert {"PGPASSWORD", "DATABASE_URL", "B2_APPLICATION_KEY"} <= secrets


def test_the_table_has_rows_with_a_default_column():
    rows = configuration_rows()
    assert len(rows) >= 30
    assert all(len(cells) == 3 for cells in rows), [c for c in rows if len(c) != 3]


def test_every_variable_read_is_in_the_table():
    names, _ = read_by_code()
    missing = sorted(names - documented())
    assert not missing, f"read by backup/ but not in the table of docs/configuration.md: {missing}"


def test_every_variable_in_the_table_is_read():
    names, secrets = read_by_code()
    allowed = names | {f"{name}_FILE" for name in secrets} | NOT_CONFIGURATION
    unknown = sorted(documented() - allowed)
    assert not unknown, f"in the docs table but never read by backup/: {unknown}"


def test_the_section_lists_every_secret():
    _, secrets = read_by_code()
    text = README.read_text(encoding="utf-8")
    intro = text[: text.index("\n|")]
    missing = sorted(name for name in secrets if f"`{name}`" not in intro)
    assert not missing, f"secrets (NAME_FILE accepted) not listed before the table: {missing}"


def test_the_table_and_help_name_the_same_variables():
    """The docs table and ``--help``'s (``backup.config.variables``) name the same variables."""
    from backup.config import variables

    rows = {v.name for v in variables.VARIABLES}
    files = {f"{v.name}_FILE" for v in variables.VARIABLES if v.secret}
    only_readme = sorted(documented() - rows - files - NOT_CONFIGURATION)
    only_help = sorted(rows - documented())
    assert not only_readme, f"in the docs table, not in backup/config/variables.py: {only_readme}"
    assert not only_help, f"in backup/config/variables.py, not in the docs table: {only_help}"


LITERALS = re.compile(r"`([^`]*)`(?:, `([^`]*)`)*")


def test_the_defaults_agree_with_help():
    """Where the page's default cell is plain values (`30`, or `5`, `120`, `1` for three
    variables), they are the defaults ``--help`` shows; a variable ``--help`` gives a default
    has one on the page too."""
    from backup.config import variables

    table = variables.by_name()
    differ = []
    for cells in configuration_rows():
        names = [n for n in re.findall(rf"`({NAME})`", cells[0]) if n in table]
        literals = re.findall(r"`([^`]*)`", cells[1])
        plain = LITERALS.fullmatch(cells[1].strip()) is not None
        for index, name in enumerate(names):
            shown = table[name].default
            if plain and len(literals) == len(names):
                if literals[index] != shown:
                    differ.append(f"{name}: docs `{literals[index]}`, --help {shown!r}")
            elif shown and not cells[1]:
                differ.append(f"{name}: docs have no default, --help {shown!r}")
    assert not differ, "defaults differ between the docs table and variables.py: " + "; ".join(
        differ
    )
