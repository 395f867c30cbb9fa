"""``prune``: apply retention alone (``--dry-run`` prints what would go and why), to the
databases this job is configured for only, and collect their orphan data objects."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

from backup import storage
from backup.config import Config
from backup.errors import BackupError, LockedError
from backup.job import scope as job_scope
from backup.job.lock import job_lock
from backup.manifest import Scope
from backup.retention import prune as engine

log = logging.getLogger(__name__)

NEEDS_DATABASES = True
DESCRIPTION = (
    "Apply retention alone (BACKUP_RETENTION_DAYS, BACKUP_KEEP_*), to this job's databases "
    "only, and remove their orphan objects and the content objects no backup names any more "
    "(directory format); --dry-run prints what would go and why."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print what would go and why")


def run(config: Config, args: argparse.Namespace) -> int:
    config.scale.require_index()  # a shard prunes its own databases only: which are they?
    storages = storage.open_all(config.storage)
    scope = job_scope.configured_scope(config)
    planned = engine.plan(
        storages,
        config.retention,
        datetime.now(UTC),
        scope,
        orphan_min_age_s=config.orphan_min_age_s,
    )
    deleted = engine.apply(storages, planned, args.dry_run)
    collected = 0
    skipped: LockedError | None = None
    if config.dump.format == "directory" or any(
        i.manifest.format == "directory" for i in planned.items
    ):
        try:
            collected = _collect_garbage(config, storages, scope, planned, args.dry_run)
        except LockedError as err:
            skipped = err
    items = planned.items
    going = sum(1 for i in items if not i.keep)
    extra = []
    if planned.orphans:
        extra.append(
            f"{len(planned.orphans)} orphan object(s) without a manifest "
            + ("would be deleted" if args.dry_run else "deleted")
        )
    if collected:
        extra.append(
            f"{collected} content object(s) no backup names "
            + ("would be deleted" if args.dry_run else "deleted")
        )
    if planned.rejected:
        extra.append(f"{len(planned.rejected)} untrustworthy manifest(s) left alone")
    tail = "; " + "; ".join(extra) if extra else ""
    if args.dry_run:
        print(f"dry run: {going} backup(s) would be deleted, {len(items) - going} kept{tail}")
    else:
        print(f"deleted {deleted} backup(s), kept {len(items) - going}{tail}")
    if skipped is not None:
        # Exit 7, as a skipped backup: a scheduled prune learns that nothing was collected.
        raise LockedError(
            f"retention applied, but the content objects no backup names were not collected: "
            f"{skipped.message}",
            hint="another run of this job holds the lock; the next prune collects them",
        )
    return 0


def _collect_garbage(
    config: Config,
    storages: list[storage.Storage],
    scope: Scope,
    planned: engine.Plan,
    dry_run: bool,
) -> int:
    """The directory format's unreferenced content objects: deleted only under the job's lock
    (never while a backup of this job may be about to name one); without it, left for later
    and ``LockedError`` raised (the caller reports the rest first, then exits 7)."""
    now = datetime.now(UTC)
    if dry_run:
        return engine.collect_garbage(storages, scope, now, config.orphan_min_age_s, True, planned)
    try:
        with job_lock(config):
            return engine.collect_garbage(storages, scope, now, config.orphan_min_age_s, False)
    except LockedError:
        raise
    except BackupError as err:
        log.warning("content objects not collected: %s", err.message)
        return 0
