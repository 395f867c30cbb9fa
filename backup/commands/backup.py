"""``backup``: one backup run from start to report: lock, start ping, dump every database to
every destination, verify (``BACKUP_VERIFY=restore``), retention, then tell people.

The outcome is known before anyone is told: the run's history (``_state/status.json``) is
updated in each destination, metrics are pushed or written, and notifiers run. None of the
telling changes the exit code. Retention runs only after a run that fully succeeded.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

from backup import catalog, dump, history, metrics, notify, prune, storage, verify
from backup import log as log_module
from backup.config import Config
from backup.errors import BackupError, IntegrityError, Interrupted
from backup.lock import job_lock
from backup.notify.base import Notifier
from backup.outcome import DatabaseResult, RunReport
from backup.storage import Storage

log = logging.getLogger(__name__)

HELP = "one backup run (the default command)"


def configure(parser: argparse.ArgumentParser) -> None:
    """``backup`` takes no arguments: everything comes from the environment."""


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage)
    notifiers = notify.build_notifiers(config.notify)
    with job_lock(config):
        started_at = datetime.now(UTC)
        _collect_orphans(config, storages, started_at)
        notify.start_all(notifiers)
        previous = {s.url: history.load(s) for s in storages}
        log.info(
            "starting database backup: %s to %s",
            ", ".join(config.postgres.databases) or "all databases",
            ", ".join(s.url for s in storages),
            extra={"stage": "start"},
        )
        results: list[DatabaseResult] = []
        error: BackupError | None = None
        try:
            results = dump.run_backup(config, storages)
            error = dump.outcome_error(results)
            if error is None and config.verify == "restore":
                error = _verify_after_backup(config, storages, results)
            if error is None:
                _retention(config, storages)
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
        _tell(config, storages, notifiers, previous, started_at, results, error)
        if error is not None:
            raise error
        log.info("database backup completed successfully", extra={"stage": "done"})
        return 0


def _verify_after_backup(
    config: Config, storages: list[Storage], results: list[DatabaseResult]
) -> BackupError | None:
    by_url = {s.url: s for s in storages}
    for result in results:
        if result.name is None or result.database == "globals":
            continue
        entries = catalog.resolve(storages, result.name, result.database, None)
        try:
            verify.restore_test(config, by_url, entries[0])
        except BackupError as err:
            return IntegrityError(
                f"BACKUP_VERIFY=restore: the new backup {result.name} failed its test restore: "
                f"{err.message}",
                hint=err.hint,
            )
    return None


def _collect_orphans(config: Config, storages: list[Storage], now: datetime) -> None:
    """Data objects of this job's databases that no manifest commits, older than any run may
    last (a run cut off between its upload and its manifest): never backups, so removed. Only
    under the lock, so never the upload of a run of this job in progress."""
    try:
        removed = prune.collect_orphans(config, storages, now)
    except Interrupted:
        raise
    except BackupError as err:
        log.warning("orphan cleanup skipped: %s", err.message, extra={"stage": "cleanup"})
        return
    if removed:
        log.info("removed %d orphan data object(s)", removed, extra={"stage": "cleanup"})


def _retention(config: Config, storages: list[Storage]) -> None:
    planned = prune.plan(storages, config.retention, datetime.now(UTC), prune.job_scope(config))
    deleted = prune.apply(storages, planned, dry_run=False)
    log.info(
        "retention (%d days, keep at least %d): deleted %d old backup(s)",
        config.retention.days,
        config.retention.keep_min,
        deleted,
        extra={"stage": "retention", "deleted": deleted},
    )


def _tell(
    config: Config,
    storages: list[Storage],
    notifiers: list[Notifier],
    previous: dict[str, history.State],
    started_at: datetime,
    results: list[DatabaseResult],
    error: BackupError | None,
) -> None:
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
        consecutive_failures=history.failures_in_a_row(previous.values(), status),
        last_success_at=history.last_success(previous.values()),
        retention_days=config.retention.days,
        alert_after_failures=config.notify.alert_after_failures,
        log_tail=tuple(log_module.tail_lines(30)),
    )
    states = {s.url: history.record(s, report, previous[s.url]) for s in storages}
    metrics.publish(config.metrics, report, states)
    if notifiers:
        failed = notify.send_all(notifiers, report, config.notify.notify_on)
        sent = len(notifiers) - failed
        log.info("notifications sent: %d, failed: %d", sent, failed, extra={"stage": "notify"})
