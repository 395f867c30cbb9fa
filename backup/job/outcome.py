"""What a run did: one ``DatabaseResult`` per database (and per destination within it), and the
``RunReport`` of the whole run that the run history, the metrics and every notifier receive.

Plain data, no I/O: the results are built by the backup engine (``dump.py``), the report by
``reporting.py`` once a command's outcome is known; read by ``history.py``, ``metrics.py`` and
``notify/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from backup.errors import BackupError


@dataclass(frozen=True)
class DestinationResult:
    url: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class DatabaseResult:
    """One database's backup within a run."""

    database: str
    status: str  # "success" | "failure" | "partial"
    name: str | None = None  # backup name, e.g. shop-20251110T030000Z
    size_bytes: int = 0
    raw_bytes: int = 0  # pg_dump output before compression
    duration_s: float = 0.0
    destinations: tuple[DestinationResult, ...] = ()
    error: str | None = None
    hint: str | None = None
    # what failed, as its class (its exit code is the class's): cli.py alone maps it to a code
    failure: type[BackupError] | None = None


@dataclass(frozen=True)
class VerifyOutcome:
    """What one ``verify`` run checked: the backup, and the test restore when one was asked."""

    name: str  # backup name, e.g. shop-20251110T030000Z
    database: str
    destination: str  # URL of the destination it was read from
    size_bytes: int  # stored bytes checked (size and sha256)
    tables: int  # tables with data in the archive's listing
    restore_test: bool = False  # --restore-test was asked (and, in a success report, passed)
    restore_seconds: float | None = None  # wall time of the test restore (pg_restore included)
    tables_checked: int = 0  # tables found in the scratch database
    row_counts_checked: int = 0  # tables whose exact row counts were compared


@dataclass(frozen=True)
class RunReport:
    """What one run of a command did; built by ``reporting.py`` once the outcome is known."""

    command: str  # "backup", "verify", ...
    status: str  # "success" | "failure" | "partial"
    exit_code: int
    started_at: datetime
    finished_at: datetime
    host: str  # the PostgreSQL server, host:port (never credentials)
    results: tuple[DatabaseResult, ...] = ()
    error: str | None = None
    hint: str | None = None
    consecutive_failures: int = 0
    previous_failures: int = 0  # failures in a row before this run (history at its start)
    last_success_at: datetime | None = None
    retention_days: int = 30
    alert_after_failures: int = 2
    log_tail: tuple[str, ...] = ()
    manual_command: str = "pgbackup backup"
    extra: dict[str, object] = field(default_factory=dict)
    verify: VerifyOutcome | None = None  # a verify run's findings (None for other commands)
    # ``<i>-of-<K>``: the run of one shard of a sharded job (BACKUP_SHARDS), else None.
    shard: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def size_bytes(self) -> int:
        return sum(r.size_bytes for r in self.results)

    @property
    def databases(self) -> list[str]:
        return [r.database for r in self.results]

    @property
    def destinations(self) -> list[str]:
        seen: dict[str, None] = {}
        for result in self.results:
            for dest in result.destinations:
                seen.setdefault(dest.url)
        return list(seen)

    @property
    def escalated(self) -> bool:
        """True when the failures in a row reached ALERT_AFTER_FAILURES."""
        return self.status != "success" and self.consecutive_failures >= self.alert_after_failures

    @property
    def recovered(self) -> bool:
        """True for the first success after one or more failures in a row."""
        return self.status == "success" and self.previous_failures > 0
