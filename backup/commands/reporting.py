"""Telling people how a run ended, for every command that runs unattended (``UNATTENDED``:
backup, verify, prune, status): the run history, the metrics and the notifications.

- ``tell_backup(...)``: a backup run's full report (per database and destination), called by the
  backup command once its outcome is known: the run history (``_state/status-<job>.json``) in each
  destination, the per-database metrics, then every notifier (success reports too, as
  NOTIFY_ON says). The error it reports is marked as told.
- ``tell_outcome(config, command, ...)``: called by ``cli.main`` after every run of an
  unattended command. It publishes the command-level metrics (``pgbackup_command_*``, every
  exit code) and, when the run failed and nobody was told yet, sends a failure report naming the
  command through every notifier: Telegram, webhooks, and healthchecks' ``/fail`` ping; a
  verify that passed is told too (as NOTIFY_ON says).
- ``record_verify(outcome)``: the verify command records the backup it checks (before reading
  it, so a failure report names it) and then what it found; ``tell_outcome`` puts the last
  one recorded in the run's report (``RunReport.verify``) and forgets it. One process runs one
  command, so this is the one value carried from a command to its report besides the error.
- ``publish_verify_metrics(config, ...)``: the verify metrics of the test restore that a backup
  runs itself (``BACKUP_VERIFY=restore``), as a verify run would publish them; nobody is told.
- ``tell_config_error(settings, command, ...)``: the same failure report for a configuration
  that ``config.load`` refused, through the channels that could be read leniently
  (``config.environment.parse_for_reports``).

Choices, documented in README ("Monitoring"): a backup's and a verify's successes are told
(prune and status succeed quietly, apart from their metrics); a skipped run (exit 7) is not a
failure and is not told; healthchecks gets no ``/start`` ping and no success ping from verify,
prune or status (HEALTHCHECK_URL is the backup's heartbeat: their success must not stand in for
a missing backup; ``notify.wanted`` keeps it out), but gets ``/fail`` when they fail; only
backup runs enter the run history, so its failures in a row count backups.

Nothing here raises or changes the exit code: ``notify.send_all`` and ``metrics.publish*`` log
and count their own failures.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from backup import log as log_module
from backup import metrics, notify
from backup.commands import UNATTENDED
from backup.config import Config, MetricsConfig, NotifyConfig
from backup.config.environment import ReportingSettings
from backup.errors import BackupError, LockedError, PartialError
from backup.job import history
from backup.job.outcome import DatabaseResult, RunReport, VerifyOutcome
from backup.notify.base import Notifier
from backup.storage import Storage

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 30
_TOLD = "_pgbackup_told"

_verify_outcome: VerifyOutcome | None = None


def told(error: BackupError) -> bool:
    """Was ``error`` already reported through the notifiers (by ``tell_backup``)?"""
    return bool(getattr(error, _TOLD, False))


def _mark_told(error: BackupError) -> None:
    setattr(error, _TOLD, True)


def record_verify(outcome: VerifyOutcome) -> None:
    """What this run's verify checks, or found: the report of the run (``tell_outcome``)
    carries the last one recorded."""
    global _verify_outcome
    _verify_outcome = outcome


def _take_verify() -> VerifyOutcome | None:
    global _verify_outcome
    outcome, _verify_outcome = _verify_outcome, None
    return outcome


def status_of(error: BackupError | None) -> str:
    if error is None:
        return "success"
    return "partial" if isinstance(error, PartialError) else "failure"


def tell_backup(
    config: Config,
    storages: list[Storage],
    notifiers: list[Notifier],
    previous: dict[str, history.State],
    started_at: datetime,
    results: list[DatabaseResult],
    error: BackupError | None,
) -> None:
    """A backup run's report: history in each destination, metrics, then every notifier."""
    status = status_of(error)
    report = RunReport(
        command="backup",
        status=status,
        exit_code=0 if error is None else error.exit_code,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        host=config.postgres.display_host,
        results=tuple(results),
        error=log_module.redact(error.message) if error else None,
        hint=log_module.redact(error.hint) if error else None,
        consecutive_failures=history.failures_in_a_row(previous.values(), status),
        previous_failures=history.failures_in_a_row(previous.values(), "failure") - 1,
        last_success_at=history.last_success(previous.values()),
        retention_days=config.retention.days,
        alert_after_failures=config.notify.alert_after_failures,
        log_tail=tuple(log_module.tail_lines(LOG_TAIL_LINES)),
        shard=shard_of_run(config),
    )
    states = {
        s.url: history.record(s, report, previous[s.url], config.postgres, config.scale)
        for s in storages
    }
    metrics.publish(config.metrics, report, states)
    _send(config.notify, notifiers, report)
    if error is not None:
        _mark_told(error)


def tell_outcome(
    config: Config,
    command: str,
    started_at: datetime,
    error: BackupError | None,
    manual_command: str,
) -> None:
    """After a run of an unattended ``command``: its metrics always, and a failure report
    through every notifier when it failed and was not told yet. Never raises."""
    verify = _take_verify()
    if command not in UNATTENDED:
        return
    if isinstance(error, LockedError):
        return
    try:
        report = command_report(
            command,
            started_at,
            error,
            host=config.postgres.display_host,
            manual_command=manual_command,
            retention_days=config.retention.days,
            alert_after_failures=config.notify.alert_after_failures,
            verify=verify,
            shard=shard_of_run(config),
        )
        # A failure not told yet, or a verify's result either way: it is news people wait for.
        notify_now = (error is not None and not told(error)) or (
            error is None and command == "verify"
        )
        _tell(config.notify, config.metrics, report, notify_now=notify_now)
    except Exception as err:  # a second signal included: telling never changes the exit code
        log.error("report: %s: %s", type(err).__name__, err)


def publish_verify_metrics(
    config: Config, started_at: datetime, outcome: VerifyOutcome, error: BackupError | None
) -> None:
    """The metrics of a test restore run by the backup itself (``BACKUP_VERIFY=restore``):
    published as a ``verify`` run's (``pgbackup_last_restore_test_seconds``, the verify success
    and its time, ``pgbackup_command_*{command="verify"}``), so the measured time to restore and
    the "verify failing / stale" alerts hold without a separate verify job. Nobody is told: the
    backup's own report says whether its test restore passed. Never raises."""
    try:
        report = command_report(
            "verify",
            started_at,
            error,
            host=config.postgres.display_host,
            manual_command=f"pgbackup verify {outcome.name} --restore-test",
            retention_days=config.retention.days,
            alert_after_failures=config.notify.alert_after_failures,
            verify=outcome,
            shard=shard_of_run(config),
        )
        metrics.publish_command(config.metrics, report)
    except Exception as err:  # telling never changes the exit code
        log.error("report: %s: %s", type(err).__name__, err)


def tell_config_error(
    settings: ReportingSettings,
    command: str,
    started_at: datetime,
    error: BackupError,
    manual_command: str,
) -> None:
    """A configuration refused by ``config.load``, reported through the channels that could be
    read (``settings``): the problems named, secrets redacted. Never raises."""
    if command not in UNATTENDED:
        return
    try:
        report = command_report(
            command,
            started_at,
            error,
            host=settings.host,
            manual_command=manual_command,
            alert_after_failures=settings.notify.alert_after_failures,
        )
        _tell(settings.notify, settings.metrics, report, notify_now=True)
    except Exception as err:  # telling never changes the exit code
        log.error("report: %s: %s", type(err).__name__, err)


def command_report(
    command: str,
    started_at: datetime,
    error: BackupError | None,
    *,
    host: str,
    manual_command: str,
    retention_days: int = 30,
    alert_after_failures: int = 2,
    verify: VerifyOutcome | None = None,
    shard: str | None = None,
) -> RunReport:
    """The report of one run of ``command`` that ended with ``error`` (None: it succeeded)."""
    problems = getattr(error, "problems", None) or ([error.message] if error else [])
    return RunReport(
        command=command,
        status=status_of(error),
        exit_code=0 if error is None else error.exit_code,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        host=log_module.redact(host),  # from a refused configuration, it may quote a secret
        error=log_module.redact("; ".join(problems)) if error else None,
        hint=log_module.redact(error.hint) if error else None,
        retention_days=retention_days,
        alert_after_failures=alert_after_failures,
        log_tail=tuple(log_module.tail_lines(LOG_TAIL_LINES)),
        manual_command=log_module.redact(manual_command),
        verify=verify,
        shard=shard,
    )


def shard_of_run(config: Config) -> str | None:
    """``<i>-of-<K>`` when this run is one shard's of a sharded job (BACKUP_SHARDS and an
    index), else None: the shards' metrics go to Pushgateway groups of their own."""
    scale = config.scale
    if not scale.sharded or scale.shard_index is None:
        return None
    return f"{scale.shard_index}-of-{scale.shards}"


def _tell(
    notify_config: NotifyConfig,
    metrics_config: MetricsConfig,
    report: RunReport,
    *,
    notify_now: bool,
) -> None:
    metrics.publish_command(metrics_config, report)
    if notify_now:
        _send(notify_config, notify.build_notifiers(notify_config), report)


def _send(config: NotifyConfig, notifiers: list[Notifier], report: RunReport) -> None:
    if not notifiers:
        return
    failed = notify.send_all(notifiers, report, config.notify_on)
    sent = len(notifiers) - failed
    log.info("notifications sent: %d, failed: %d", sent, failed, extra={"stage": "notify"})
