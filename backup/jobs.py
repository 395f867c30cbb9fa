"""The backup run and the read-only commands, as sequences of steps.

``backup`` dumps each configured database once and streams it to every destination; a
destination commits (manifest written last) only when its own upload succeeded. Retention runs
only when the whole run succeeded. ``list``, ``prune`` and ``status`` read manifests only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backup import __version__, manifest, postgres
from backup.codec import object_suffix
from backup.config import Config
from backup.errors import (
    BackupError,
    ConfigError,
    DatabaseError,
    IntegrityError,
    Interrupted,
    LockedError,
    PartialError,
    StorageError,
)
from backup.manifest import Manifest
from backup.notify.base import DatabaseResult, DestinationResult
from backup.pipeline import Progress, stream_dump
from backup.storage.base import Destination, Storage, open_storage

log = logging.getLogger(__name__)


@dataclass
class Target:
    """A destination and its opened backend."""

    url: str
    storage: Storage


def open_targets(config: Config, only: str | None = None) -> list[Target]:
    # A destination outside the configuration is allowed for list/restore (a second copy).
    urls = [only] if only else list(config.storage.destinations)
    return [Target(url, open_storage(Destination.parse(url), config.storage)) for url in urls]


@contextlib.contextmanager
def job_lock(config: Config) -> Iterator[None]:
    """One run per job: the lock is named after the destinations and databases."""
    identity = "|".join(
        (*config.storage.destinations, *config.postgres.databases, config.postgres.display_host)
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = Path(config.lock_dir) / f"pgbackup-{digest}.lock"
    try:
        handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as err:
        raise ConfigError(
            f"BACKUP_LOCK_DIR: cannot create the lock file {path}: {err.strerror}"
        ) from err
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise LockedError(f"another backup run holds {path}") from err
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# ----------------------------------------------------------------------------- backup


@dataclass
class Server:
    info: postgres.ServerInfo
    tools: postgres.Tools
    databases: list[str]
    superuser: bool


def inspect_server(config: Config) -> Server:
    """Connect once: server version, matching client tools, the databases to back up."""
    pg = config.postgres
    first = pg.databases[0] if pg.databases else (pg.database or "postgres")
    with postgres.connect(pg, first) as conn:
        info = postgres.server_info(conn)
        superuser = postgres.is_superuser(conn)
        if pg.all_databases:
            databases = postgres.list_databases(conn)
        else:
            databases = list(pg.databases)
            existing = set(postgres.list_databases(conn))
            missing = [d for d in databases if d not in existing]
            if missing:
                log.warning("databases not found on the server: %s", ", ".join(missing))
    tools = postgres.choose_tools(info, config.pg_bin_dirs)
    log.info(
        "server %s (PostgreSQL %s), using pg_dump %s from %s",
        pg.display_host,
        info.version,
        tools.version,
        tools.bindir,
        extra={"stage": "connect", "server_version": info.version, "pg_dump": tools.version},
    )
    return Server(info=info, tools=tools, databases=databases, superuser=superuser)


def backup_database(
    config: Config, server: Server, targets: list[Target], database: str | None
) -> DatabaseResult:
    """One dump (``database=None``: the globals) streamed to every target, then committed."""
    label = database if database is not None else "globals"
    started_at = now_utc()
    suffix = object_suffix(config.codec.compression, config.codec.encrypted)
    key = manifest.object_key(database, started_at, suffix)
    name = (
        manifest.backup_name(database, started_at)
        if database is not None
        else manifest.globals_name(started_at)
    )
    pg = config.postgres
    env = pg.libpq_env(database)
    counts: dict[str, object] = {}
    log.info("creating backup %s of %s", name, label, extra={"stage": "dump", "database": label})
    try:
        with contextlib.ExitStack() as stack:
            if database is None:
                argv = [server.tools.path("pg_dumpall"), "--globals-only", "--no-password"]
                if not server.superuser:
                    log.warning(
                        "not a superuser: role passwords are left out of the globals "
                        "(pg_dumpall --no-role-passwords)"
                    )
                    argv.append("--no-role-passwords")
            else:
                argv = [server.tools.path("pg_dump"), "-Fc", "-Z0", "--no-password"]
                counts, snapshot = _row_counts(config, stack, database)
                if snapshot:
                    argv.append(f"--snapshot={snapshot}")
            result = stream_dump(
                argv,
                env,
                "pg_dumpall" if database is None else "pg_dump",
                config.codec,
                [(t.storage, key) for t in targets],
                Progress(f"backup {name}", config.log.progress_interval_s),
            )
    except Interrupted:
        raise
    except BackupError as err:
        log.error("backup of %s failed: %s", label, err.message, extra={"database": label})
        return DatabaseResult(
            database=label,
            status="failure",
            name=name,
            duration_s=(now_utc() - started_at).total_seconds(),
            destinations=tuple(DestinationResult(t.url, False, err.message) for t in targets),
            error=err.message,
            hint=err.hint,
            exit_code=err.exit_code,
        )
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
    finished_at = now_utc()
    record = Manifest(
        name=name,
        kind="database" if database is not None else "globals",
        database=database,
        created_at=started_at,
        finished_at=finished_at,
        object_key=key,
        size_bytes=result.stored_bytes,
        raw_size_bytes=result.raw_bytes,
        sha256=result.sha256,
        compression=config.codec.compression,
        encryption=_encryption_record(config),
        pg_dump_version=server.tools.version,
        server_version=server.info.version,
        duration_s=round(result.seconds, 3),
        job_version=__version__,
        row_counts=counts,
    )
    outcomes = []
    for target, upload in zip(targets, result.uploads, strict=True):
        error = None if upload.ok else _describe(upload.error)
        if error is None:
            try:
                manifest.write(target.storage, record)
            except BackupError as err:
                error = f"manifest not written: {err.message}"
                with contextlib.suppress(BackupError):
                    target.storage.delete([key])
        if error is None:
            log.info(
                "backup %s committed to %s: %s",
                name,
                target.url,
                key,
                extra={"stage": "upload", "destination": target.url, "bytes": upload.size},
            )
        else:
            log.error("backup %s not stored on %s: %s", name, target.url, error)
        outcomes.append(DestinationResult(target.url, error is None, error))
    good = [o for o in outcomes if o.ok]
    status = "success" if len(good) == len(outcomes) else "partial" if good else "failure"
    failed = [o for o in outcomes if not o.ok]
    hints = [u.error.hint for u in result.uploads if isinstance(u.error, BackupError)]
    return DatabaseResult(
        database=label,
        status=status,
        name=name,
        size_bytes=result.stored_bytes,
        raw_bytes=result.raw_bytes,
        duration_s=(finished_at - started_at).total_seconds() or result.seconds,
        destinations=tuple(outcomes),
        error="; ".join(_with_url(o.url, o.error) for o in failed) or None,
        hint=(hints[0] if hints else StorageError.default_hint) if failed else None,
        exit_code=StorageError.exit_code if failed else 0,
    )


def _with_url(url: str, error: str | None) -> str:
    """``url: error``, unless the backend's message already names the destination."""
    text = error or "failed"
    return text if text.startswith(url) else f"{url}: {text}"


def _describe(error: BaseException | None) -> str:
    if isinstance(error, BackupError):
        return error.message
    return str(error) or type(error).__name__


def _encryption_record(config: Config) -> dict[str, object] | None:
    if not config.codec.encrypted:
        return None
    from backup.encryption import recipient_fingerprints

    return {"format": "age", "recipients": recipient_fingerprints(config.codec)}


def _row_counts(
    config: Config, stack: contextlib.ExitStack, database: str
) -> tuple[dict[str, object], str | None]:
    """Row counts for the manifest; in ``exact`` mode, counted in the dump's own snapshot."""
    mode = config.row_counts
    if mode == "off":
        return {}, None
    pg = config.postgres
    if mode == "estimate":
        with postgres.connect(pg, database) as conn:
            return {"mode": "estimate", "tables": postgres.row_counts(conn, "estimate")}, None
    # One REPEATABLE READ transaction: export its snapshot, count in it, and keep it open until
    # pg_dump (which imports the snapshot) is done, so counts and dump see the same data.
    conn = stack.enter_context(postgres.connect(pg, database, autocommit=False))
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    snapshot = row[0] if row else None
    counts = postgres.row_counts(conn, "exact")
    stack.callback(conn.rollback)
    return {"mode": "exact", "tables": counts}, snapshot


def run_backup(config: Config, targets: list[Target]) -> list[DatabaseResult]:
    """Back up every configured database; one failing does not stop the others."""
    server = inspect_server(config)
    for target in targets:
        cleanup = getattr(target.storage, "cleanup_incomplete", None)
        if cleanup:
            try:
                removed = cleanup()
                if removed:
                    log.info("removed %d unfinished uploads on %s", removed, target.url)
            except BackupError as err:
                log.warning("could not clean unfinished uploads on %s: %s", target.url, err)
    if not server.databases:
        raise ConfigError("BACKUP_DATABASES: no database to back up on the server")
    results = [backup_database(config, server, targets, db) for db in server.databases]
    if config.postgres.all_databases:
        results.append(backup_database(config, server, targets, None))
    return results


def outcome_error(results: list[DatabaseResult]) -> BackupError | None:
    """The error that sets the exit code, or None when every backup reached every target."""
    failures = [r for r in results if r.status == "failure"]
    if failures:
        names = ", ".join(r.database for r in failures)
        first = failures[0]
        error_class = ERRORS_BY_EXIT_CODE.get(first.exit_code, DatabaseError)
        return error_class(f"backup failed for {names}: {first.error}", first.hint)
    partials = [r for r in results if r.status == "partial"]
    if partials:
        failed = sorted({d.url for r in partials for d in r.destinations if not d.ok})
        return PartialError(f"backup did not reach: {', '.join(failed)}")
    return None


ERRORS_BY_EXIT_CODE: dict[int, type[BackupError]] = {
    cls.exit_code: cls for cls in (DatabaseError, StorageError, IntegrityError, PartialError)
}


# ----------------------------------------------------------------------------- check


def check(config: Config, targets: list[Target]) -> list[str]:
    """Configuration, database reachability and versions, every destination writable."""
    lines = ["configuration: ok"]
    server = inspect_server(config)
    lines.append(
        f"database: {config.postgres.display_host} reachable, PostgreSQL {server.info.version}, "
        f"{len(server.databases)} database(s) to back up: {', '.join(server.databases)}"
    )
    lines.append(
        f"pg_dump: {server.tools.version} from {server.tools.bindir} "
        f"(server major {server.info.major}: ok)"
    )
    failures = []
    for target in targets:
        try:
            probe_destination(target.storage)
            lines.append(f"destination {target.url}: write, read back, delete ok")
        except BackupError as err:
            failures.append(f"{target.url}: {err.message}")
            lines.append(f"destination {target.url}: FAILED: {err.message}")
    if failures:
        for line in lines:
            print(line)
        raise StorageError("destination check failed: " + "; ".join(failures))
    return lines


def probe_destination(storage: Storage) -> None:
    import io
    import secrets

    key = f"{manifest.STATE_DIR}/check-{secrets.token_hex(6)}.probe"
    payload = secrets.token_bytes(1024)
    storage.put(key, io.BytesIO(payload))
    try:
        with storage.open(key) as stream:
            if stream.read() != payload:
                raise StorageError(f"{storage.url}: the probe object read back differs")
    finally:
        storage.delete([key])
