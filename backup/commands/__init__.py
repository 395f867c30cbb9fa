"""One module per CLI verb, each with the same five members:

- ``HELP``: one line for ``pgbackup --help``;
- ``DESCRIPTION``: a paragraph for the verb's own ``--help`` (which also lists the variables
  the verb uses: ``backup.config.variables``, where a new variable gets its row);
- ``NEEDS_DATABASES``: the verb acts on the databases this job backs up, so one must be named
  (``BACKUP_DATABASES``, ``PGDATABASE`` or ``DATABASE_URL``'s path), else exit 2;
- ``configure(parser)``: the verb's arguments;
- ``run(config, args) -> int``: wire the configuration to the engines, print the result, return
  the exit code (errors are raised as ``BackupError`` and become exit codes in ``cli.main``).

``COMMANDS`` lists the verbs in the order ``--help`` shows them; the first is the default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import textwrap
from types import FrameType, ModuleType

from backup.config import variables

log = logging.getLogger(__name__)

COMMANDS = ("backup", "list", "restore", "verify", "prune", "status", "check", "contents")
DEFAULT = "backup"


def load(name: str) -> ModuleType:
    """The module of the verb ``name`` (one of ``COMMANDS``)."""
    return importlib.import_module(f"backup.commands.{name}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """One subparser per verb, each configured by its own module; its ``--help`` says what it
    does (``DESCRIPTION``), its options, and the environment variables it uses (the table of
    ``backup.config.variables``, which reads no value)."""
    for name in COMMANDS:
        module = load(name)
        parser = sub.add_parser(
            name,
            help=module.HELP,
            description=textwrap.fill(module.DESCRIPTION, variables.WIDTH),
            epilog=variables.help_text(name),
            formatter_class=variables.help_formatter,
        )
        module.configure(parser)


def stopping() -> None:
    """From now on the run is being stopped (a first signal, or BACKUP_TIMEOUT): the cleanup
    that follows (children reaped, uploads aborted, the failure recorded and reported) must not
    be cut short, so a later SIGTERM or SIGINT is only logged."""
    signal.signal(signal.SIGTERM, _while_stopping)
    signal.signal(signal.SIGINT, _while_stopping)


def _while_stopping(signum: int, frame: FrameType | None) -> None:
    log.warning("received %s while stopping: the cleanup goes on", signal.Signals(signum).name)
