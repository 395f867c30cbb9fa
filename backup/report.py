"""A backup run from start to report: lock, ping, back up, verify, retention, then tell people.

The outcome is known before anyone is told: the run's history (``_state/status.json``) is
updated in each destination, metrics are pushed or written, and notifiers run. None of the
telling changes the exit code.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from backup import catalog, jobs, manifest, state
from backup import notify as notify_module
from backup.config import Config
from backup.errors import BackupError, IntegrityError
from backup.notify.base import DatabaseResult, RunReport

log = logging.getLogger(__name__)


def backup_and_report(config: Config) -> int:
    targets = jobs.open_targets(config)
    with jobs.job_lock(config):
        started_at = datetime.now(UTC)
        notify_module.ping_start(config.notify)
        previous = {t.url: state.load(t.storage) for t in targets}
        log.info(
            "starting database backup: %s to %s",
            ", ".join(config.postgres.databases) or "all databases",
            ", ".join(t.url for t in targets),
            extra={"stage": "start"},
        )
        results: list[DatabaseResult] = []
        error: BackupError | None = None
        try:
            results = jobs.run_backup(config, targets)
            error = jobs.outcome_error(results)
            if error is None and config.verify == "restore":
                error = _verify_after_backup(config, targets, results)
            if error is None:
                _retention(config, targets)
        except BackupError as err:  # SIGINT and SIGTERM arrive here as Interrupted
            error = err
        if error is not None and not results:
            # Failed before any dump (e.g. the server refused us): every database failed.
            results = [
                DatabaseResult(
                    database=db,
                    status="failure",
                    error=error.message,
                    hint=error.hint,
                    exit_code=error.exit_code,
                )
                for db in config.postgres.databases
            ]
        _tell(config, targets, previous, started_at, results, error)
        if error is not None:
            raise error
        log.info("database backup completed successfully", extra={"stage": "done"})
        return 0


def _verify_after_backup(
    config: Config, targets: list[jobs.Target], results: list[DatabaseResult]
) -> BackupError | None:
    from backup import verify

    storages = {t.url: t.storage for t in targets}
    for result in results:
        if result.name is None or result.database == "globals":
            continue
        entries = catalog.resolve(targets, result.name, result.database, None)
        try:
            verify.restore_test(config, storages, entries[0])
        except BackupError as err:
            return IntegrityError(
                f"BACKUP_VERIFY=restore: the new backup {result.name} failed its test restore: "
                f"{err.message}",
                hint=err.hint,
            )
    return None


def _retention(config: Config, targets: list[jobs.Target]) -> None:
    items = catalog.plan_prune(targets, config.retention, datetime.now(UTC))
    deleted = catalog.apply_prune(targets, items, dry_run=False)
    log.info(
        "retention (%d days, keep at least %d): deleted %d old backup(s)",
        config.retention.days,
        config.retention.keep_min,
        deleted,
        extra={"stage": "retention", "deleted": deleted},
    )


def _tell(
    config: Config,
    targets: list[jobs.Target],
    previous: dict[str, state.State],
    started_at: datetime,
    results: list[DatabaseResult],
    error: BackupError | None,
) -> None:
    from backup import log as log_module
    from backup import metrics

    if error is None:
        status = "success"
    elif error.exit_code == 6:
        status = "partial"
    else:
        status = "failure"
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
        consecutive_failures=state.failures_in_a_row(previous.values(), status),
        last_success_at=state.last_success(previous.values()),
        retention_days=config.retention.days,
        alert_after_failures=config.notify.alert_after_failures,
        log_tail=tuple(log_module.tail_lines(30)),
    )
    states = {t.url: state.record(t.storage, report, previous[t.url]) for t in targets}
    _publish_metrics(metrics, config, report, states)
    notifiers = notify_module.build_notifiers(config.notify)
    if notifiers:
        failed = notify_module.send_all(notifiers, report, config.notify.notify_on)
        sent = len(notifiers) - failed
        log.info("notifications sent: %d, failed: %d", sent, failed, extra={"stage": "notify"})


def freshness(
    config: Config, targets: list[jobs.Target], now: datetime, max_age_hours: float
) -> tuple[list[dict[str, object]], list[str]]:
    """Newest complete backup per database and destination; the stale or missing ones."""
    rows: list[dict[str, object]] = []
    stale: list[str] = []
    limit = timedelta(hours=max_age_hours)
    for target in targets:
        records = manifest.read_all(target.storage)
        history = state.load(target.storage)
        expected = (
            sorted({m.database for m in records if m.database})
            if config.postgres.all_databases
            else list(config.postgres.databases)
        )
        if config.postgres.all_databases and not expected:
            expected = ["(any)"]
        for database in expected:
            newest = next((m for m in records if m.database == database), None)
            age = (now - newest.created_at) if newest else None
            fresh = age is not None and age <= limit
            db_state = history.databases.get(database)
            rows.append(
                {
                    "database": database,
                    "destination": target.url,
                    "state": "ok" if fresh else ("stale" if newest else "missing"),
                    "newest": newest.name if newest else None,
                    "created_at": newest.created_at.isoformat() if newest else None,
                    "age_hours": round(age.total_seconds() / 3600, 2) if age else None,
                    "consecutive_failures": db_state.consecutive_failures if db_state else 0,
                }
            )
            if not fresh:
                stale.append(f"{database} on {target.url}")
    return rows, stale


def _publish_metrics(metrics, config: Config, report: RunReport, states: dict) -> None:
    publish = getattr(metrics, "publish", None)
    if publish is not None:
        publish(config.metrics, report, states)
