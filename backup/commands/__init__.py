"""One module per CLI verb, each with the same four members:

- ``DESCRIPTION``: a paragraph for the verb's own ``--help`` (which also lists the variables
  the verb uses: ``backup.config.variables``, where a new variable gets its row);
- ``NEEDS_DATABASES``: the verb acts on the databases this job backs up, so one must be named
  (``BACKUP_DATABASES``, ``PGDATABASE`` or ``DATABASE_URL``'s path), else exit 2;
- ``configure(parser)``: the verb's arguments;
- ``run(config, args) -> int``: wire the configuration to the engines, print the result, return
  the exit code (errors are raised as ``BackupError`` and become exit codes in ``cli.main``).

``HELP`` gives each verb its line of ``pgbackup --help``, in the order shown; the first is the
default. A verb's module is imported only when that verb is chosen (or its parser looked up):
``pgbackup --help`` and a run of one verb never import the engines of the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import textwrap
from collections.abc import Iterator, MutableMapping
from types import FrameType, ModuleType
from typing import Any

from backup.config import variables

log = logging.getLogger(__name__)

HELP = {
    "backup": "one backup run (the default command)",
    "list": "complete backups of every database, newest first",
    "restore": "restore a backup (asks for YES; --force without a terminal)",
    "verify": "check a backup: size, sha256, archive listing",
    "prune": "apply retention alone",
    "status": "age of the newest complete backup; exit 1 when too old",
    "check": "config, database, pg_dump/server versions, destinations",
    "contents": "what a backup holds: schemas, tables (rows, sizes), views, functions",
}
COMMANDS = tuple(HELP)
DEFAULT = "backup"
# The verbs a scheduler runs: how they ended is told (``reporting``); the others' runs never
# import the notifiers and metrics.
UNATTENDED = ("backup", "verify", "prune", "status")


def load(name: str) -> ModuleType:
    """The module of the verb ``name`` (one of ``COMMANDS``)."""
    return importlib.import_module(f"backup.commands.{name}")


def add_parsers(parser: argparse.ArgumentParser) -> None:
    """One subparser per verb (``args.command``); its ``--help`` says what it does
    (``DESCRIPTION``), its options, and the environment variables it uses (the table of
    ``backup.config.variables``, which reads no value). Each verb's module configures its
    parser only when the parser is looked up (``_LazyParsers``)."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=VerbsAction)
    for name, help_line in HELP.items():
        sub.add_parser(
            name,
            help=help_line,
            epilog=variables.help_text(name),
            formatter_class=variables.help_formatter,
        )


class VerbsAction(argparse._SubParsersAction):
    """argparse's action for the verbs, whose parsers (``choices``) are ``_LazyParsers``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = self.choices = _LazyParsers()


class _LazyParsers(MutableMapping[str, argparse.ArgumentParser]):
    """The verbs' parsers, by name: a parser got from here has been configured by its verb's
    module (imported then, once), whether argparse is parsing that verb or a test or the docs
    walk every verb; the top-level ``--help`` reads only ``HELP``."""

    def __init__(self) -> None:
        self._parsers: dict[str, argparse.ArgumentParser] = {}
        self._configured: set[str] = set()

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        parser = self._parsers[name]
        if name not in self._configured:
            self._configured.add(name)
            module = load(name)
            parser.description = textwrap.fill(module.DESCRIPTION, variables.WIDTH)
            module.configure(parser)
        return parser

    def __setitem__(self, name: str, parser: argparse.ArgumentParser) -> None:
        self._parsers[name] = parser

    def __delitem__(self, name: str) -> None:
        del self._parsers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsers)

    def __len__(self) -> int:
        return len(self._parsers)


def stopping() -> None:
    """From now on the run is being stopped (a first signal, or BACKUP_TIMEOUT): the cleanup
    that follows (children reaped, uploads aborted, the failure recorded and reported) must not
    be cut short, so a later SIGTERM or SIGINT is only logged."""
    signal.signal(signal.SIGTERM, _while_stopping)
    signal.signal(signal.SIGINT, _while_stopping)


def _while_stopping(signum: int, frame: FrameType | None) -> None:
    log.warning("received %s while stopping: the cleanup goes on", signal.Signals(signum).name)
