"""Command line: the verbs of ``backup.commands``, and the one place errors become exit codes.

Each error is one ``error:`` line and one ``hint:`` line; the traceback goes to the debug log.
Then the commands that run unattended (``commands.UNATTENDED``) tell how they ended: metrics
after every run, a failure report through every notifier when they failed, a configuration
error included (through the channels that could still be read).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import platform
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any, NoReturn, TextIO

from backup import __version__, commands
from backup import config as config_module
from backup import log as log_module
from backup.config import variables
from backup.config.environment import parse_for_reports
from backup.errors import BackupError, ConfigError, Interrupted

log = logging.getLogger("backup")

# After a failed run, threads still working (a request to a hung server) get this long to end.
EXIT_GRACE_S = 3.0
# The reader of our output went away (``list | head -3``) and the command had nothing else to
# say: the status ``sh`` reports for any tool whose output pipe closed (128 + SIGPIPE).
EXIT_OUTPUT_CLOSED = 141

DESCRIPTION = """\
pgbackup-job: one run does one job and exits with a status code.
Exit codes: 0 done, 1 unexpected error, 2 configuration or usage, 3 database, 4 storage,
5 integrity, 6 partial (some destinations failed), 7 skipped (locked), 130 interrupted.
Configuration comes from the environment (below); '{prog} COMMAND --help' says
what a command does, its options and the variables it uses."""

# The command: what `pip install` puts on PATH and the container image's entrypoint;
# `python -m backup` runs the same. `entrypoint.py` is kept as an alias (older deployments
# start `python /app/entrypoint.py`), and its --help says its own name.
COMMAND_NAME = "pgbackup"
ALIAS_NAME = "entrypoint.py"


def _prog() -> str:
    return ALIAS_NAME if os.path.basename(sys.argv[0]) == ALIAS_NAME else COMMAND_NAME


def _manual_command(args: Sequence[str]) -> str:
    """The command line a notification shows for running this command again by hand: always
    the ``pgbackup`` command (in the image, from ``pip install``), whatever started this run."""
    return shlex.join([COMMAND_NAME, *args])


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one JSON line with LOG_FORMAT=json (the
    sub-commands' parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        if log_module.current_format() == "json":
            hint = f"'{self.prog} --help' shows the commands and their options"
            log.error("%s: %s", self.prog, message, extra={"hint": hint, "exit_code": 2})
            self.exit(2)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    prog = _prog()
    parser = _Parser(
        prog=prog,
        description=DESCRIPTION.format(prog=prog),
        epilog=variables.help_text(),
        formatter_class=variables.help_formatter,
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="show the job's version, Python's and every PostgreSQL client found, and exit",
    )
    commands.add_parsers(parser)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the job's version on the first line (for scripts), then what a run would
    use: the Python and the pg_dump of every PostgreSQL major found, with where it is."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from backup.postgres import tools  # psycopg, for this option only

        found = tools.installed_tools()
        clients = ", ".join(f"{t.version} ({t.bindir})" for t in found) or "none found"
        print(f"pgbackup-job {__version__}")
        print(f"Python {platform.python_version()}")
        print(f"PostgreSQL client tools: {clients}")
        parser.exit()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # The first signal stops the run; the cleanup that follows (children reaped, uploads
    # aborted, the failure recorded and reported) must not be cut short by a second one.
    commands.stopping()
    signal.setitimer(signal.ITIMER_REAL, 0)  # nor by BACKUP_TIMEOUT
    raise Interrupted(f"received {signal.Signals(signum).name}")


class _Output:
    """stdout for a command: once its reader has gone, the rest of the output is dropped
    quietly and the command goes on to end as it would have (``status`` still exits 1 when a
    backup is stale), instead of failing with a ``BrokenPipeError`` in whatever it was doing."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        # What is buffered, and every later write, goes nowhere instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)
        self.reader_gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    _fix_mmap_threshold()
    output = _Output(sys.stdout)
    sys.stdout = output  # type: ignore[assignment]
    try:
        code = _main(argv)
    finally:  # also after argparse's --help, which exits
        output.flush()
        sys.stdout = output._stream
    if output.reader_gone and code == 0:
        code = EXIT_OUTPUT_CLOSED
    _leave_stuck_threads(code)
    return code


# Buffers this large (the 1 MiB chunks, the upload parts) get their own mapping, returned to
# the system when freed.
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _fix_mmap_threshold() -> None:
    """Keep glibc from raising its mmap threshold: by default, once a large buffer is freed,
    buffers up to that size come from the heaps of each thread's arena instead, where a chunk
    freed by another thread (a part read by one thread, uploaded and freed by another) is
    rarely given back: the job's memory would grow with the number of threads and parts that
    ever ran (11 MiB more for a backup to S3, measured). Not glibc (musl, macOS): nothing."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def _leave_stuck_threads(code: int) -> None:
    """A failed run is over: a worker still stuck in a request to a hung server must not keep
    the process alive (Python joins ThreadPoolExecutor workers at exit, daemon or not). Its
    upload is unfinished, so invisible; a later run's cleanup removes it."""
    if code == 0:
        return
    deadline = time.monotonic() + EXIT_GRACE_S
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in others if t.is_alive()]
    if not stuck:
        return
    log.warning("exiting without waiting for %d thread(s): %s", len(stuck), ", ".join(stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv: Sequence[str] | None = None) -> int:
    # An empty PGSSLMODE= or AWS_DEFAULT_REGION= counts as unset for libpq and botocore too.
    config_module.unset_blank_variables()
    log_module.setup(config_module.log_format())
    parser = build_parser()
    args = parser.parse_args(argv)
    name = args.command or commands.DEFAULT
    command = commands.load(name)
    manual = _manual_command(sys.argv[1:] if argv is None else argv)
    started_at = datetime.now(UTC)
    try:
        config = config_module.load()
    except ConfigError as err:
        return _report_config_error(err, name, started_at, manual)
    log_module.setup(config.log.format, config.log.level, config.secrets())
    for variable, suggestion in config.unknown_variables:
        maybe = f" (did you mean {suggestion}?)" if suggestion else ""
        shown = (
            variable if variable.isascii() and variable.isidentifier() else ascii(variable[:100])
        )
        log.warning("%s is not a variable of this job and is ignored%s", shown, maybe)
    if command.NEEDS_DATABASES:
        try:
            config.postgres.require_databases()
        except ConfigError as err:
            return _report_config_error(err, name, started_at, manual)
    # Both signals become Interrupted, a BackupError: the run stops its children, aborts its
    # uploads, records and reports the interruption, and exits 130.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    error: BackupError | None = None
    try:
        exit_code = command.run(config, args)
    except BackupError as err:
        error = err
    except KeyboardInterrupt:
        error = Interrupted("interrupted (SIGINT)")
    except Exception as err:
        log.debug("unexpected error", exc_info=True)
        error = BackupError(f"unexpected {type(err).__name__}: {err}")
    if error is not None:
        exit_code = _report_error(error)
    # Unattended commands tell how they ended (metrics; notifications when they failed).
    if name in commands.UNATTENDED:
        from backup.commands import reporting  # notifiers and metrics: only when told

        reporting.tell_outcome(config, name, started_at, error, manual)
    return exit_code


def _report_config_error(err: ConfigError, command: str, started_at: datetime, manual: str) -> int:
    """Print the configuration error, then report it through whatever channels still work."""
    try:
        settings = parse_for_reports()
    except Exception as lenient_err:  # e.g. a *_FILE secret that is not UTF-8: still say why
        log.debug("lenient parse failed: %s", type(lenient_err).__name__)
        log_module.setup(config_module.log_format())
        return _report_error(err)
    log_module.setup(config_module.log_format(), secrets=settings.secrets)
    exit_code = _report_error(err)
    if command in commands.UNATTENDED:
        from backup.commands import reporting

        reporting.tell_config_error(settings, command, started_at, err, manual)
    return exit_code


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
