"""Command line: argparse subcommands, and the one place errors become exit codes.

Each error is one ``error:`` line and one ``hint:`` line; the traceback goes to the debug log.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from backup import __version__
from backup import config as config_module
from backup import log as log_module
from backup.errors import BackupError, ConfigError, Interrupted

log = logging.getLogger("backup")

DESCRIPTION = """\
pgbackup-job: one run does one job and exits with a status code.
Exit codes: 0 done, 1 unexpected error, 2 configuration or usage, 3 database, 4 storage,
5 integrity, 6 partial (some destinations failed), 7 skipped (locked), 130 interrupted.
Configuration comes from the environment; see README."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entrypoint.py",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pgbackup-job {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("backup", help="one backup run (the default command)")

    p = sub.add_parser("list", help="complete backups of every database, newest first")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--database", help="only this database")
    p.add_argument("--destination", metavar="URL", help="only this destination")
    p.add_argument("--globals", action="store_true", help="list roles/tablespaces backups")

    p = sub.add_parser(
        "restore",
        help="restore a backup (asks for YES; --force without a terminal)",
        description="Restore into a fresh database, then swap names: the current database is "
        "kept as <db>_pre_restore_<timestamp> unless --drop-old. Nothing is changed before "
        "the new copy restored fully and its sha256 matched.",
    )
    p.add_argument("name", nargs="?", default="latest", help="backup name from 'list', or latest")
    p.add_argument(
        "--target-db",
        metavar="DB",
        help="database to restore into (default: the backed-up database's name)",
    )
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--in-place",
        action="store_true",
        help="restore into the existing database with --clean --if-exists (for roles "
        "that may not create databases); the object is verified in full first",
    )
    p.add_argument(
        "--drop-old",
        action="store_true",
        help="drop the previous database after the swap instead of keeping it",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="parallel pg_restore; needs a seekable file, so the decoded archive is "
        "first downloaded to a temporary file in TMPDIR (needs that much disk)",
    )
    p.add_argument("--database", help="the database whose backup to restore (for latest)")
    p.add_argument("--destination", metavar="URL", help="read from this destination first")
    p.add_argument("--globals", action="store_true", help="restore roles and tablespaces")
    p.add_argument("--dry-run", action="store_true", help="show what would be done")

    p = sub.add_parser("verify", help="check a backup: size, sha256, archive listing")
    p.add_argument("name", nargs="?", default="latest")
    p.add_argument(
        "--restore-test",
        action="store_true",
        help="also restore into a scratch database and compare tables and row counts",
    )
    p.add_argument("--database")
    p.add_argument("--destination", metavar="URL")

    p = sub.add_parser("prune", help="apply retention alone")
    p.add_argument("--dry-run", action="store_true", help="print what would go and why")

    p = sub.add_parser("status", help="age of the newest complete backup; exit 1 when too old")
    p.add_argument(
        "--max-age",
        type=float,
        default=26.0,
        metavar="HOURS",
        help="older than this is stale (default 26)",
    )
    p.add_argument("--json", action="store_true")

    sub.add_parser("check", help="config, database, pg_dump/server versions, destinations")
    return parser


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"received {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "backup"
    log_module.setup()
    try:
        config = config_module.load()
    except ConfigError as err:
        return _report_error(err)
    log_module.setup(config.log.format, config.log.level, config.secrets())
    # Both signals become Interrupted, a BackupError: the run stops its children, aborts its
    # uploads, records and reports the interruption, and exits 130.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        from backup import commands

        return getattr(commands, command)(config, args)
    except BackupError as err:
        return _report_error(err)
    except KeyboardInterrupt:
        return _report_error(Interrupted("interrupted (SIGINT)"))
    except Exception as err:
        log.debug("unexpected error", exc_info=True)
        return _report_error(
            BackupError(f"unexpected {type(err).__name__}: {err}"),
        )


def _report_error(err: BackupError) -> int:
    problems = getattr(err, "problems", None) or [err.message]
    message = log_module.redact("; ".join(problems))
    hint = log_module.redact(err.hint)
    if log_module.current_format() == "json":
        log.error("%s", message, extra={"hint": hint, "exit_code": err.exit_code})
    else:
        print(f"error: {message}", file=sys.stderr)
        print(f"hint: {hint}", file=sys.stderr)
    return err.exit_code
