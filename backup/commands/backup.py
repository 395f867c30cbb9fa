"""``backup``: one backup run from start to report: lock, start ping, dump every database to
every destination, verify (``BACKUP_VERIFY=restore``), retention, then tell people.

The outcome is known before anyone is told (``reporting.tell_backup``): the run's history
(``_state/status-<job>.json``) is updated in each destination, metrics are pushed or written, and
notifiers run. A failure before the run began (a lock directory that does not exist) is told
by ``cli.main`` (``reporting.tell_outcome``). None of the telling changes the exit code.
Retention runs only after a run that fully succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from types import FrameType

from backup import commands, dump, notify, storage, verify
from backup.commands import reporting
from backup.config import Config
from backup.dirformat import spool
from backup.errors import BackupError, IntegrityError, Interrupted
from backup.job import history
from backup.job import scope as job_scope
from backup.job.lock import job_lock
from backup.job.outcome import DatabaseResult, VerifyOutcome
from backup.manifest import catalog
from backup.retention import prune
from backup.storage import Storage
from backup.stream.codec import DEFAULT_LEVEL

log = logging.getLogger(__name__)

NEEDS_DATABASES = True
DESCRIPTION = (
    "Back up every database of the job (BACKUP_DATABASES) to every destination "
    "(BACKUP_DESTINATIONS): pg_dump -Fc streamed through zstd or gzip and age when set, its "
    "sha256 checked, and a manifest written last as the commit. Then BACKUP_VERIFY=restore's "
    "test restore, retention (only after a fully successful run), the run history, metrics "
    "and notifications. Takes no arguments: everything comes from the environment. Exit 0 "
    "done, 3 database, 4 storage, 5 integrity, 6 partial, 7 skipped (another run holds the "
    "lock)."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """``backup`` takes no arguments: everything comes from the environment."""


def run(config: Config, args: argparse.Namespace) -> int:
    config.scale.require_index()  # a shard backs up its own databases only: which are they?
    storages = storage.open_all(config.storage)
    notifiers = notify.build_notifiers(config.notify)
    with job_lock(config):
        started_at = datetime.now(UTC)
        notify.start_all(notifiers)
        previous = {s.url: history.load(s, config.postgres, config.scale) for s in storages}
        log.info(
            "starting database backup: %s%s to %s (%s)",
            ", ".join(config.postgres.databases) or "all databases",
            f" ({config.scale.describe()})" if config.scale.sharded else "",
            ", ".join(s.url for s in storages),
            _compression_settings(config),
            extra={"stage": "start", "compression_threads": config.codec.threads},
        )
        results: list[DatabaseResult] = []
        error: BackupError | None = None
        try:
            with _deadline(config.timeout_s):
                spool.remove_stale(config)  # what killed runs of this job left in TMPDIR
                _collect_orphans(config, storages, started_at)
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
                    failure=type(error),
                )
                for db in config.postgres.databases
            ]
        reporting.tell_backup(config, storages, notifiers, previous, started_at, results, error)
        if error is not None:
            raise error
        log.info("database backup completed successfully", extra={"stage": "done"})
        return 0


def _compression_settings(config: Config) -> str:
    """How the dump is compressed, for the run's first line: BACKUP_COMPRESSION_THREADS shown
    once, as chosen (from the variable or the cgroup CPU quota)."""
    codec = config.codec
    if codec.compression == "none":
        return "no compression"
    level = codec.level or DEFAULT_LEVEL[codec.compression]
    if codec.compression == "gzip":
        return f"gzip level {level}"
    return f"zstd level {level}, {codec.threads} compression thread(s)"


@contextlib.contextmanager
def _deadline(timeout_s: float) -> Iterator[None]:
    """Raise ``RunTimedOut`` in the run when ``BACKUP_TIMEOUT`` has passed: it takes the same
    path as SIGTERM (children killed, uploads aborted), then the failure is reported."""

    def expired(signum: int, frame: FrameType | None) -> None:
        # From now on the run is being stopped: a SIGTERM during the cleanup must not cut it.
        commands.stopping()
        log.error("the run took longer than BACKUP_TIMEOUT (%s): stopping it", _seconds(timeout_s))
        raise dump.RunTimedOut(
            f"the run took longer than BACKUP_TIMEOUT ({_seconds(timeout_s)}) and was stopped"
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _seconds(value: float) -> str:
    """``6 h``, ``30 min`` or ``90 s``: the duration as a user would write it."""
    for unit, size in (("h", 3600), ("min", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:.0f} {unit}"
    return f"{value:.0f} s"


def _verify_after_backup(
    config: Config, storages: list[Storage], results: list[DatabaseResult]
) -> BackupError | None:
    by_url = {s.url: s for s in storages}
    for result in results:
        if result.name is None or result.database == "globals":
            continue
        entries = catalog.resolve(storages, result.name, result.database, None)
        entry = entries[0]
        started_at = datetime.now(UTC)
        outcome = VerifyOutcome(
            name=result.name,
            database=result.database,
            destination=entry.destination,
            size_bytes=entry.manifest.size_bytes,
            tables=0,
            restore_test=True,
        )
        try:
            test = verify.restore_test(config, by_url, entry)
        except (Interrupted, dump.RunTimedOut):
            raise  # the run was stopped (exit 130, or BACKUP_TIMEOUT): not a failed restore
        except BackupError as err:
            reporting.publish_verify_metrics(config, started_at, outcome, err)
            return IntegrityError(
                f"BACKUP_VERIFY=restore: the new backup {result.name} failed its test restore: "
                f"{err.message}",
                hint=err.hint,
            )
        outcome = replace(
            outcome,
            restore_seconds=test.seconds,
            tables_checked=test.tables_checked,
            row_counts_checked=test.row_counts_checked,
        )
        reporting.publish_verify_metrics(config, started_at, outcome, None)
    return None


def _collect_orphans(config: Config, storages: list[Storage], now: datetime) -> None:
    """Data objects of this job's databases that no manifest commits, older than any run may
    last (a run cut off between its upload and its manifest): never backups, so removed. Only
    under the lock, so never the upload of a run of this job in progress."""
    try:
        removed = prune.collect_orphans(config, storages, now)
    except (Interrupted, dump.RunTimedOut):
        raise
    except BackupError as err:
        log.warning("orphan cleanup skipped: %s", err.message, extra={"stage": "cleanup"})
        return
    if removed:
        log.info("removed %d orphan data object(s)", removed, extra={"stage": "cleanup"})


def _retention(config: Config, storages: list[Storage]) -> None:
    planned = prune.plan(
        storages, config.retention, datetime.now(UTC), job_scope.configured_scope(config)
    )
    deleted = prune.apply(storages, planned, dry_run=False)
    if config.dump.format == "directory" or any(
        m.manifest.format == "directory" for m in planned.items
    ):
        # Under this run's lock: no backup of this job is running meanwhile.
        prune.collect_garbage(
            storages,
            job_scope.configured_scope(config),
            datetime.now(UTC),
            config.orphan_min_age_s,
            dry_run=False,
        )
    log.info(
        "retention (%d days, keep at least %d): deleted %d old backup(s)",
        config.retention.days,
        config.retention.keep_min,
        deleted,
        extra={"stage": "retention", "deleted": deleted},
    )
