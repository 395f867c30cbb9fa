"""The backup engine: each configured database dumped once, streamed to every destination, then
committed by its manifest on each destination that received every byte.

``run_backup`` connects once (``inspect_server``: the server's version, the matching pg_dump,
the databases), removes what a crashed run left unfinished, then calls ``backup_database`` for
each database (and the globals with ``BACKUP_DATABASES=all``). One database failing does not
stop the others; each returns a ``DatabaseResult``. ``outcome_error`` turns the results into the
error that sets the exit code. The manifest is written here, after ``stream_dump`` returned:
that is the commit. What each archive holds (row counts, exclusions) comes from its own table
of contents (``postgres/contents.py``).

``BACKUP_PARALLEL_DATABASES`` databases are dumped at once (``stream/concurrent.py``); with
``BACKUP_SHARDS`` only this shard's databases are (``ScaleConfig.share``), the globals on shard 0.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import shlex
import tempfile
from datetime import UTC, datetime

from backup import manifest
from backup.config import Config
from backup.dump import directory
from backup.dump.commit import Facts, Pending, base_manifest, commit
from backup.errors import (
    BackupError,
    ConfigError,
    DatabaseError,
    Interrupted,
    PartialError,
)
from backup.job.outcome import DatabaseResult, DestinationResult
from backup.manifest.catalog import unused_moment
from backup.postgres import contents, dump_failure, standby
from backup.postgres import replay as replay_pause
from backup.postgres import server as pg_server
from backup.postgres import tools as pg_tools
from backup.postgres.inspection import Server, inspect_server
from backup.postgres.lockwatch import LockWatcher
from backup.postgres.pg_restore import HEAD_LIMIT_BYTES
from backup.storage import Storage, retry
from backup.stream import concurrent
from backup.stream.codec import object_suffix
from backup.stream.pipeline import StreamResult, stream_dump
from backup.stream.progress import Progress

log = logging.getLogger(__name__)


_dump_counter = itertools.count(1)


class RunTimedOut(DatabaseError):
    """The whole run took longer than ``BACKUP_TIMEOUT``: everything is aborted (exit 3)."""

    default_hint = (
        "the run was stopped by BACKUP_TIMEOUT: look in the log for a lock wait or a stalled "
        "upload; raise BACKUP_TIMEOUT only if the database really needs longer"
    )


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def backup_database(
    config: Config, server: Server, storages: list[Storage], database: str | None
) -> DatabaseResult:
    """One dump (``database=None``: the globals) streamed to every destination, then committed."""
    label = database if database is not None else "globals"
    started_at = unused_moment(storages, database)
    suffix = object_suffix(config.codec.compression, config.codec.encrypted)
    key = manifest.object_key(database, started_at, suffix)
    name = (
        manifest.backup_name(database, started_at)
        if database is not None
        else manifest.globals_name(started_at)
    )
    pg = config.postgres
    env = pg.libpq_env(database)
    # A name of its own, so the lock watcher (and an operator) can find this dump's backend.
    application_name = f"pg_dump pgbackup-job {os.getpid()} {next(_dump_counter)}"
    env["PGAPPNAME"] = application_name
    counts: dict[str, object] = {}
    excluded: dict[str, object] = {}
    snapshot_conn = None
    catalog: dict[int, str] = {}
    watcher: LockWatcher | None = None
    conflicts: standby.Conflicts | None = None
    replay = server.replay
    connect = functools.partial(pg_server.connect, pg)
    folder_format = database is not None and config.dump.format == "directory"
    log.info("creating backup %s of %s", name, label, extra={"stage": "dump", "database": label})
    try:
        with contextlib.ExitStack() as stack:
            if database is None:
                if not server.superuser:
                    log.warning(
                        "not a superuser: role passwords are left out of the globals "
                        "(pg_dumpall --no-role-passwords)"
                    )
                argv = pg_tools.pg_dumpall_argv(server.tools, role_passwords=server.superuser)
            else:
                if server.replay.standby:
                    # Where this database's dump starts: its replay time, its conflicts so far.
                    with connect(database) as conn:
                        conflicts = standby.Conflicts(conn, database)
                        replay = standby.replay_state(conn)
                pause = (  # entered first: replay resumes after the snapshot is released
                    stack.enter_context(replay_pause.ReplayPause(config, database))
                    if server.replay.standby and config.standby_pause_replay
                    else None
                )
                snapshot_conn, snapshot = contents.open_snapshot(config, stack, database)
                if pause is not None:  # pg_dump imports the snapshot taken before the pause
                    snapshot = pause.pause(snapshot)
                catalog = contents.server_tables(config, database, snapshot_conn)
                argv = pg_tools.pg_dump_argv(
                    server.tools,
                    snapshot,
                    config.lock_wait_timeout_s,
                    config.dump.pg_dump_options(),
                )
                watcher = stack.enter_context(
                    LockWatcher(pg, database, application_name, f"pg_dump of {label}")
                )
            if folder_format and database is not None:
                folder_result = directory.dump_directory(
                    config,
                    functools.partial(
                        pg_tools.pg_dump_argv,
                        server.tools,
                        snapshot,
                        config.lock_wait_timeout_s,
                        config.dump.pg_dump_options(),
                        jobs=config.dump.jobs,
                    ),
                    env,
                    storages,
                    database,
                    Progress(f"backup {name}", config.log.progress_interval_s),
                    lambda folder: contents.read_folder_contents(server.tools, folder, label),
                )
                counts, excluded = contents.describe(
                    config, database, catalog, snapshot_conn, folder_result.toc
                )
                contents.log_excluded(label, excluded)
                stack.close()  # the snapshot and the lock watcher: the dump is over
                facts = Facts(
                    name,
                    database,
                    started_at,
                    now_utc(),
                    folder_result.seconds,
                    _encryption_record(config),
                    (server.tools.version, server.info.version),
                    (counts, excluded),
                    replay.manifest_record(),
                )
                pending = directory.pending(folder_result, base_manifest(config, facts))
                return commit(pending, facts, folder_result.raw_bytes)
            # The archive's first bytes, its table of contents: what the dump really holds.
            head = (
                stack.enter_context(tempfile.TemporaryFile(prefix="pgbackup-toc-"))
                if database is not None
                else None
            )
            result = stream_dump(
                argv,
                env,
                "pg_dumpall" if database is None else "pg_dump",
                config.codec,
                [(s, key) for s in storages],
                Progress(f"backup {name}", config.log.progress_interval_s),
                head=head,
                head_limit_bytes=HEAD_LIMIT_BYTES,
            )
            if database is not None and head is not None:
                held = contents.read_contents(server.tools, head, label)
                counts, excluded = contents.describe(config, database, catalog, snapshot_conn, held)
                contents.log_excluded(label, excluded)
    except (Interrupted, RunTimedOut):
        raise
    except BackupError as err:
        log.error("backup of %s failed: %s", label, err.message, extra={"database": label})
        dump_failure.explain(
            err,
            wait=watcher.last_wait if watcher is not None else None,
            conflicts=_conflicts_since(conflicts, connect, database),
            standby=server.replay.standby,
        )
        return DatabaseResult(
            database=label,
            status="failure",
            name=name,
            duration_s=(now_utc() - started_at).total_seconds(),
            destinations=tuple(DestinationResult(s.url, False, err.message) for s in storages),
            error=err.message,
            hint=err.hint,
            failure=type(err),
        )
    assert isinstance(result, StreamResult)
    ratio = 100.0 * (1 - result.stored_bytes / result.raw_bytes) if result.raw_bytes else 0.0
    log.info(
        "dump of %s done: %.2f MB, stored %.2f MB %s (%.1f%% reduction) in %.1f s",
        label,
        result.raw_bytes / 1e6,
        result.stored_bytes / 1e6,
        config.codec.compression + (" + age" if config.codec.encrypted else ""),
        ratio,
        result.seconds,
        extra={
            "stage": "dump",
            "database": label,
            "raw_bytes": result.raw_bytes,
            "stored_bytes": result.stored_bytes,
            "seconds": round(result.seconds, 3),
        },
    )
    facts = Facts(
        name,
        database,
        started_at,
        now_utc(),
        result.seconds,
        _encryption_record(config),
        (server.tools.version, server.info.version),
        (counts, excluded),
        replay.manifest_record(),
    )
    record = base_manifest(
        config,
        facts,
        object_key=key,
        size_bytes=result.stored_bytes,
        raw_size_bytes=result.raw_bytes,
        sha256=result.sha256,
    )
    pending = [
        Pending(
            storage,
            record,
            None if upload.ok else _describe(upload.error),
            functools.partial(_delete_quietly, storage, key),
            stored=key,
            stored_bytes=upload.size,
            hint=upload.error.hint if isinstance(upload.error, BackupError) else None,
        )
        for storage, upload in zip(storages, result.uploads, strict=True)
    ]
    return commit(pending, facts, result.raw_bytes, size_bytes=result.stored_bytes)


def _delete_quietly(storage: Storage, key: str) -> None:
    """The object whose manifest could not be written: nothing may look like a backup."""
    with contextlib.suppress(BackupError):
        storage.delete([key])


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


def _describe(error: BaseException | None) -> str:
    if isinstance(error, BackupError):
        return error.message
    return str(error) or type(error).__name__


def _encryption_record(config: Config) -> dict[str, object] | None:
    if not config.codec.encrypted:
        return None
    from backup.stream.age import recipient_fingerprints

    return {"format": "age", "recipients": recipient_fingerprints(config.codec)}


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
    databases = config.scale.share(server.databases)
    if config.scale.sharded:
        log.info(
            "%s: %d of the job's %d databases: %s",
            config.scale.describe(),
            len(databases),
            len(server.databases),
            ", ".join(databases) or "none",
        )
    _cleanup_incomplete(config, storages, databases)
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
    if config.postgres.all_databases and config.scale.owns_globals:
        targets.append(None)
    if parallel > 1 and len(targets) > 1:
        log.info("dumping up to %d databases at once", parallel, extra={"stage": "dump"})
    # The results in the order of the databases (the globals last), however many at once.
    return concurrent.run_each(
        targets, functools.partial(backup_database, config, server, storages), parallel, "dump"
    )


def _cleanup_incomplete(config: Config, storages: list[Storage], databases: list[str]) -> None:
    """Remove what crashed runs of this job left unfinished: only in the folders of the
    databases it backs up (another job may share the bucket), and only uploads older than any
    run may last (another copy of this job may be uploading right now)."""
    scope = manifest.Scope(
        frozenset(databases), globals=config.postgres.all_databases and config.scale.owns_globals
    )
    folders = [f"{folder}/" for folder in scope.folders()]
    for storage in storages:
        removed = 0
        try:
            # A few folders at once: one listing each, hundreds with BACKUP_DATABASES=all.
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
