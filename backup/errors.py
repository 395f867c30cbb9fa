"""The error hierarchy: one subclass per exit code, each with a message and a hint.

Only ``cli.main`` catches broadly; everything else raises one of these with
``raise ... from err`` so the cause reaches the debug log.
"""

from __future__ import annotations


class BackupError(Exception):
    """Root of every error the job reports to the user."""

    exit_code = 1
    default_hint = "this is a bug: rerun with LOG_LEVEL=DEBUG and report the traceback"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        return self.message


class ConfigError(BackupError):
    """Configuration or usage error, found before anything ran (exit 2)."""

    exit_code = 2
    default_hint = "fix the configuration and run again; see docs/configuration.md"

    def __init__(self, problems: list[str] | str, hint: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        message = problems[0] if len(problems) == 1 else "; ".join(problems)
        super().__init__(message, hint)


class DatabaseError(BackupError):
    """Connection, authentication, pg_dump or pg_restore failed (exit 3)."""

    exit_code = 3
    default_hint = "check PGHOST, PGPORT, PGUSER, PGPASSWORD and that the server is reachable"


class StorageError(BackupError):
    """Upload, download, list or delete failed after retries (exit 4)."""

    exit_code = 4
    default_hint = "check the destination URL, its credentials and that the bucket exists"


class ObjectNotFound(StorageError):
    """A key that does not exist was opened; backends raise exactly this."""

    default_hint = "run 'list' to see which backups exist"


class IntegrityError(BackupError):
    """Checksum mismatch, truncated or undecryptable backup (exit 5)."""

    exit_code = 5
    default_hint = (
        "the stored object is damaged or the key is wrong: try another backup or destination"
    )


class PartialError(BackupError):
    """The backup reached some destinations but not all (exit 6)."""

    exit_code = 6
    default_hint = "the named destinations did not receive this backup; the others are committed"


class LockedError(BackupError):
    """Another run of the same job holds the lock (exit 7)."""

    exit_code = 7
    default_hint = "another run is in progress; this one was skipped"


class Interrupted(BackupError):
    """SIGINT or SIGTERM: children stopped, nothing half-written left visible (exit 130)."""

    exit_code = 130
    default_hint = "the run was interrupted; nothing was committed"


class StaleError(BackupError):
    """status: the newest backup is older than --max-age, or missing (exit 1)."""

    exit_code = 1
    default_hint = "the last backups did not run or failed: check the job's logs"
