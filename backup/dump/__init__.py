"""The backup engine: each configured database dumped once, streamed to every destination, then
committed by its manifest on each destination that received every byte.

``run_backup`` connects once (``inspect_server``: the server's version, the matching pg_dump,
the databases), removes what a crashed run left unfinished, then calls ``backup_database`` for
each database (and the globals with ``BACKUP_DATABASES=all``). One database failing does not
stop the others; each returns a ``DatabaseResult``. ``outcome_error`` turns the results into the
error that sets the exit code. Each dump is named and prepared in ``start.py``, streamed in
``custom.py`` (or ``directory.py``), and its manifest written last (``commit.py``): that is the
commit. What each archive holds (row counts, exclusions) comes from its own table
of contents (``postgres/contents.py``).

``BACKUP_PARALLEL_DATABASES`` databases are dumped at once (``stream/concurrent.py``); with
``BACKUP_SHARDS`` only this shard's databases are (``job/scope.py``), the globals on shard 0.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shlex
import tempfile

from backup import manifest
from backup.config import Config
from backup.dump import custom, directory, start
from backup.dump.commit import base_manifest, commit
from backup.dump.start import now_utc
from backup.errors import (
    BackupError,
    ConfigError,
    DatabaseError,
    Interrupted,
    PartialError,
)
from backup.job import scope as job_scope
from backup.job.outcome import DatabaseResult, DestinationResult
from backup.postgres import contents, dump_failure, standby
from backup.postgres import replay as replay_pause
from backup.postgres import server as pg_server
from backup.postgres import tools as pg_tools
from backup.postgres.inspection import Server, inspect_server
from backup.storage import Storage, retry
from backup.stream import concurrent
from backup.stream.progress import Progress

log = logging.getLogger(__name__)


class RunTimedOut(DatabaseError):
    """The whole run took longer than ``BACKUP_TIMEOUT``: everything is aborted (exit 3)."""

    default_hint = (
        "the run was stopped by BACKUP_TIMEOUT: look in the log for a lock wait or a stalled "
        "upload; raise BACKUP_TIMEOUT only if the database really needs longer"
    )


def backup_database(
    config: Config, server: Server, storages: list[Storage], database: str | None
) -> DatabaseResult:
    """One dump (``database=None``: the globals) streamed to every destination, then committed:
    named and started (``start.py``), then the directory format (``directory.py``) or one
    stream (``custom.py``, the globals' too); a failure is the database's result, not a raise."""
    dump = start.named(config, server, storages, database)
    log.info(
        "creating backup %s of %s",
        dump.name,
        dump.label,
        extra={"stage": "dump", "database": dump.label},
    )
    try:
        with contextlib.ExitStack() as stack:
            if database is None:
                start.prepare_globals(server, dump)
            else:
                start.prepare_database(config, server, stack, dump)
                if config.dump.format == "directory":
                    return _dump_directory(config, server, storages, dump, stack)
            result, described = custom.stream(config, server, storages, dump, stack)
    except (Interrupted, RunTimedOut):
        raise
    except BackupError as err:
        return _failed(config, server, storages, dump, err)
    return custom.commit_stream(config, server, storages, dump, result, described)


def _dump_directory(
    config: Config,
    server: Server,
    storages: list[Storage],
    dump: start.Dump,
    stack: contextlib.ExitStack,
) -> DatabaseResult:
    """pg_dump -Fd with BACKUP_JOBS workers, each file stored once (``directory.py``); what the
    archive holds read from its own listing; the snapshot and the lock watcher released before
    the commit."""
    database = dump.database
    assert database is not None
    folder_result = directory.dump_directory(
        config,
        functools.partial(
            pg_tools.pg_dump_argv,
            server.tools,
            dump.snapshot,
            config.lock_wait_timeout_s,
            config.dump.pg_dump_options(),
            jobs=config.dump.jobs,
        ),
        dump.env,
        storages,
        database,
        Progress(f"backup {dump.name}", config.log.progress_interval_s),
        lambda folder: contents.read_folder_contents(server.tools, folder, dump.label),
    )
    counts, excluded = contents.describe(
        config, database, dump.catalog, dump.snapshot_conn, folder_result.toc
    )
    contents.log_excluded(dump.label, excluded)
    stack.close()  # the snapshot and the lock watcher: the dump is over
    facts = dump.facts(config, server, folder_result.seconds, (counts, excluded))
    pending = directory.pending(folder_result, base_manifest(config, facts))
    return commit(pending, facts, folder_result.raw_bytes)


def _failed(
    config: Config, server: Server, storages: list[Storage], dump: start.Dump, err: BackupError
) -> DatabaseResult:
    """The failed database's result, its cause explained (a lock wait, a standby's conflicts)."""
    label = dump.label
    log.error("backup of %s failed: %s", label, err.message, extra={"database": label})
    dump_failure.explain(
        err,
        wait=dump.watcher.last_wait if dump.watcher is not None else None,
        conflicts=_conflicts_since(
            dump.conflicts, functools.partial(pg_server.connect, config.postgres), dump.database
        ),
        standby=server.replay.standby,
    )
    return DatabaseResult(
        database=label,
        status="failure",
        name=dump.name,
        duration_s=(now_utc() - dump.started_at).total_seconds(),
        destinations=tuple(DestinationResult(s.url, False, err.message) for s in storages),
        error=err.message,
        hint=err.hint,
        failure=type(err),
    )


def _conflicts_since(
    conflicts: standby.Conflicts | None, connect: functools.partial, database: str | None
) -> list[str]:
    """The recovery conflicts a standby counted in ``database`` during its failed dump."""
    if conflicts is None or database is None:
        return []
    try:
        with connect(database) as conn:
            return conflicts.since(conn)
    except BackupError:
        return []


def run_backup(config: Config, storages: list[Storage]) -> list[DatabaseResult]:
    """Back up every configured database; one failing does not stop the others."""
    replay_pause.resume_left_over(config)  # a pause a killed run left, before the lag check
    server = inspect_server(config)
    refusal = standby.refusal(config, server.replay) or replay_pause.refusal(
        config, server.replay.standby
    )
    if refusal is not None:
        raise refusal
    if not server.databases:
        raise ConfigError("BACKUP_DATABASES: no database to back up on the server")
    databases = job_scope.share_of(config, server.databases)
    if config.scale.sharded:
        log.info(
            "%s: %d of the job's %d databases: %s",
            config.scale.describe(),
            len(databases),
            len(server.databases),
            ", ".join(databases) or "none",
        )
    _clean_unfinished_uploads(config, storages, job_scope.scope_of(config, databases))
    options = config.dump.pg_dump_options()
    if options:
        log.info("pg_dump options of every database dump: %s", shlex.join(options))
    parallel = config.scale.parallel_databases
    if config.dump.format == "directory" and databases:
        # Before any dump: a spool too small for the largest table is refused (exit 2).
        largest = max(contents.largest_table_bytes(config, db) for db in databases)
        directory.check_spool_space(
            tempfile.gettempdir(), largest, config.dump.jobs * min(parallel, len(databases))
        )
    targets: list[str | None] = list(databases)
    if job_scope.owns_globals(config):
        targets.append(None)
    if parallel > 1 and len(targets) > 1:
        log.info("dumping up to %d databases at once", parallel, extra={"stage": "dump"})
    # The results in the order of the databases (the globals last), however many at once.
    return concurrent.run_each(
        targets, functools.partial(backup_database, config, server, storages), parallel, "dump"
    )


def _clean_unfinished_uploads(
    config: Config, storages: list[Storage], scope: manifest.Scope
) -> None:
    """Remove what crashed runs of this job left unfinished: only in the folders of the
    databases it backs up (another job may share the bucket), and only uploads older than any
    run may last (another copy of this job may be uploading right now)."""
    folders = [f"{folder}/" for folder in scope.folders()]
    for storage in storages:
        removed = 0
        try:
            # One listing of the destination where the backend offers it (S3); else a few
            # folders at once, one listing each: hundreds with BACKUP_DATABASES=all.
            in_folders = getattr(storage, "cleanup_incomplete_in", None)
            if in_folders is not None and len(folders) > 1:
                removed = in_folders(folders, older_than_s=config.orphan_min_age_s)
            else:
                clean = functools.partial(
                    storage.cleanup_incomplete, older_than_s=config.orphan_min_age_s
                )
                removed = sum(retry.each(folders, clean))
        except (Interrupted, RunTimedOut):
            raise
        except BackupError as err:
            log.warning("could not clean unfinished uploads on %s: %s", storage.url, err)
        if removed:
            log.info(
                "removed %d unfinished upload(s) older than %.0f s on %s",
                removed,
                config.orphan_min_age_s,
                storage.url,
                extra={"stage": "cleanup", "destination": storage.url},
            )


def outcome_error(results: list[DatabaseResult]) -> BackupError | None:
    """The error that sets the exit code, or None when every backup reached every destination."""
    failures = [r for r in results if r.status == "failure"]
    if failures:
        names = ", ".join(r.database for r in failures)
        first = failures[0]
        cls = first.failure or DatabaseError
        return cls(f"backup failed for {names}: {first.error}", first.hint)
    partials = [r for r in results if r.status == "partial"]
    if partials:
        failed = sorted({d.url for r in partials for d in r.destinations if not d.ok})
        return PartialError(f"backup did not reach: {', '.join(failed)}")
    return None
