"""The docs site's generated reference pages, written from the code's own tables so they can
never drift: the environment variables from ``backup.config.variables`` (what ``--help``
shows), the command line from the argparse parsers of ``backup.cli``.

``mkdocs.yml`` names this file as a hook: a page holding a marker line
(``<!-- generated: environment -->``, ``<!-- generated: cli -->``) gets the generated Markdown
in its place at build time. The pages on disk keep only their introduction, so they read well
on GitHub too. ``python scripts/docs_reference.py environment|cli`` prints the Markdown.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Callable
from typing import Any

from backup import cli, commands
from backup.config import variables

MARKER = re.compile(r"^<!-- generated: (?P<what>[a-z-]+) -->$", re.MULTILINE)


def _text(value: str) -> str:
    """Plain text for a Markdown table cell: no HTML, no emphasis, no cell break."""
    escaped = html.escape(value, quote=False)
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", escaped).replace("\n", " ")


def _code(value: str) -> str:
    return f"`{value}`" if "`" not in value else f"`` {value} ``"


def environment_page() -> str:
    """Every variable of ``variables.VARIABLES``, one table per group, in ``--help``'s order."""
    lines = [
        f"{len(variables.VARIABLES)} variables, in {len(variables.GROUPS)} groups. "
        "*secret*: the value is masked in every log line and message, and may instead be read "
        "from the file that `NAME_FILE` names.",
    ]
    for group in variables.GROUPS:
        members = [v for v in variables.VARIABLES if v.group == group]
        lines += [
            "",
            f"## {group.capitalize()}",
            "",
            "| variable | default | meaning | used by |",
            "|---|---|---|---|",
        ]
        for v in members:
            name = " ".join(_code(n) for n in v.names())
            if v.secret:
                name += " (secret)"
            default = _code(v.default) if v.default else ""
            used = ", ".join(c for c in commands.COMMANDS if c in v.commands)
            lines.append(f"| {name} | {default} | {_text(v.meaning)} | {used} |")
    return "\n".join(lines) + "\n"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            metavar = formatter._format_args(action, action.dest.upper())
            flag = ", ".join(action.option_strings) + (f" {metavar}" if metavar else "")
        else:
            flag = formatter._metavar_formatter(action, action.dest)(1)[0]
        help_text = formatter._expand_help(action) if action.help else ""
        rows.append(f"| {_code(flag)} | {_text(help_text)} |")
    return rows


def cli_page() -> str:
    """The usage, options and environment variables of ``pgbackup`` and of every command."""
    # The parser names itself after how it was started: document the installed command.
    started_as = sys.argv[:]
    sys.argv[:1] = [cli.COMMAND_NAME]
    try:
        parser = cli.build_parser()
    finally:
        sys.argv[:] = started_as
    lines = [
        "```",
        parser.format_usage().strip(),
        "```",
        "",
        "| option | meaning |",
        "|---|---|",
        *_option_rows(parser),
    ]
    for name, sub in _subparsers(parser).items():
        module = commands.load(name)
        default = ""
        if name == commands.DEFAULT and "default" not in commands.HELP[name]:
            default = " (the default command)"
        used = [v for v in variables.VARIABLES if name in v.commands]
        lines += [
            "",
            f"### {name}",
            "",
            f"{_text(commands.HELP[name])}{default}.",
            "",
            "```",
            sub.format_usage().strip(),
            "```",
            "",
            _text(module.DESCRIPTION),
            "",
            "| argument | meaning |",
            "|---|---|",
            *_option_rows(sub),
            "",
            f"Environment variables `{name}` uses ([reference](environment.md)): "
            + ", ".join(_code(v.name) for v in used)
            + ".",
        ]
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {"environment": environment_page, "cli": cli_page}


def fill(markdown: str) -> str:
    """``markdown`` with each marker line replaced by what it names."""
    return MARKER.sub(lambda m: GENERATORS[m["what"]]().rstrip("\n"), markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs hook (``hooks:`` in mkdocs.yml)."""
    return fill(markdown)


if __name__ == "__main__":
    print(GENERATORS[sys.argv[1]]())
