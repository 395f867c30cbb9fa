"""One run per job: a second run of the same job, on this machine or another, exits 7.

Two locks, both held for the whole run and both named after what the job does (its
destinations and its databases):

- a local ``flock`` in ``BACKUP_LOCK_DIR``: cheap, and it works before the server is reachable;
- a PostgreSQL session-level advisory lock (``pg_try_advisory_lock``) on the source server, held
  by a connection the job keeps open: two pods of one CronJob, or two hosts, see each other
  there. The server releases it when the session ends, so a job that dies (SIGKILL, OOM, a lost
  node) leaves no stale lock behind.

On a hot standby the advisory lock is taken on its primary (``_on_primary``): a copy of the job
pointed at the primary and one pointed at a standby are the same job on the same data.

When the server cannot be reached the advisory lock is skipped with a warning: the run then
fails at its first connection, through the reporting path, rather than here unreported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psycopg

from backup.config import Config, PostgresConfig
from backup.errors import ConfigError, DatabaseError, LockedError
from backup.postgres import locks as pg_locks
from backup.postgres import pooler
from backup.postgres import server as pg_server
from backup.postgres import standby as pg_standby

log = logging.getLogger(__name__)

APPLICATION_PREFIX = "pgbackup-job lock"
MAX_UPSTREAM_HOPS = 3


def lock_identity(config: Config) -> str:
    """What one job is: its destinations and its databases (order does not matter); one shard
    of a sharded job (``BACKUP_SHARDS``) is a job of its own: the shards run at once, each on
    its own databases."""
    databases = ["*all*"] if config.postgres.all_databases else sorted(config.postgres.databases)
    shard = (
        [f"--shard {config.scale.shard_index}/{config.scale.shards}"]
        if config.scale.sharded
        else []
    )
    return "|".join((*sorted(config.storage.destinations), "--", *databases, *shard))


def advisory_key(config: Config) -> int:
    """The advisory lock's key: a signed 64-bit number derived from ``lock_identity``."""
    digest = hashlib.sha256(f"pgbackup-job|{lock_identity(config)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def job_lock(config: Config) -> Iterator[None]:
    """Hold the job's locks until the block ends; ``LockedError`` when another run holds one."""
    with _local_lock(config), _server_lock(config):
        yield


def local_lock_path(config: Config) -> Path:
    """The lock file in BACKUP_LOCK_DIR: named after the job and its server."""
    identity = "|".join((lock_identity(config), config.postgres.display_host))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(config.lock_dir) / f"pgbackup-{digest}.lock"


_LOCK_DIR_HINT = (
    "BACKUP_LOCK_DIR must name an existing directory, by its absolute path, where the job may "
    "create a file (the default /tmp will do; on Kubernetes an emptyDir)"
)


def open_lock_file(config: Config) -> IO[str]:
    """The job's lock file in BACKUP_LOCK_DIR, opened (created when missing) as ``backup``
    holds it; ``ConfigError`` (exit 2) naming BACKUP_LOCK_DIR when that cannot be done: a
    relative path (two runs started from two directories would not see each other), a
    directory that is missing, a file, or one where no file can be created (``/proc``).
    ``check`` calls it too: it refuses what ``backup`` would refuse."""
    if not os.path.isabs(config.lock_dir):
        raise ConfigError(
            f"BACKUP_LOCK_DIR={config.lock_dir!r} is not an absolute path: runs started from "
            "different directories would not see each other's lock",
            hint=_LOCK_DIR_HINT,
        )
    path = local_lock_path(config)
    try:
        return open(path, "a+")  # the caller holds it for the whole run
    except OSError as err:
        raise ConfigError(
            f"BACKUP_LOCK_DIR: cannot create the lock file {path}: {err.strerror or err}",
            hint=_LOCK_DIR_HINT,
        ) from err


def probe_lock_dir(config: Config) -> list[str]:
    """``check``'s part: the lock file can be opened as ``backup`` opens it (one it created
    is removed again; a running backup's lock is not touched)."""
    existed = local_lock_path(config).exists()
    handle = open_lock_file(config)
    handle.close()
    if not existed:
        with contextlib.suppress(OSError):
            local_lock_path(config).unlink()
    return [f"BACKUP_LOCK_DIR: {config.lock_dir}: the lock file can be created"]


@contextlib.contextmanager
def _local_lock(config: Config) -> Iterator[None]:
    path = local_lock_path(config)
    handle = open_lock_file(config)
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


@contextlib.contextmanager
def _server_lock(config: Config) -> Iterator[None]:
    pg = config.postgres
    # Advisory locks belong to one database: every copy of the job connects to the same one.
    database = pg.databases[0] if pg.databases else (pg.database or "postgres")
    key = advisory_key(config)
    name = f"{APPLICATION_PREFIX} {socket.gethostname()[:32]} pid {os.getpid()}"
    where = pg
    with contextlib.ExitStack() as stack:
        try:
            conn = stack.enter_context(pg_server.connect(pg, database, application_name=name))
            # Through a pool per transaction the lock would stay on a shared session (exit 2).
            pooler.require_sessions(pg, database, conn)
            conn, where = _on_primary(stack, conn, pg, database, name)
            taken = pg_locks.try_advisory_lock(conn, key)
            holder = None if taken else pg_locks.advisory_lock_holder(conn, key)
        except DatabaseError as err:
            log.warning(
                "could not take the job's lock on %s (%s); going on with the local lock only",
                where.display_host,
                err.message,
            )
            taken, holder = True, None
        if not taken:
            raise LockedError(
                f"another backup run of this job holds its lock on {where.display_host} "
                f"database {database!r}: {holder or 'a session that just ended'}",
                hint="another run is in progress (maybe on another machine); this one was "
                "skipped. If no run is in progress, that session is a leftover: "
                "pg_terminate_backend(pid) ends it",
            )
        log.debug("holding the job's advisory lock %d on %s", key, where.display_host)
        yield


def _on_primary(
    stack: contextlib.ExitStack,
    conn: psycopg.Connection,
    pg: PostgresConfig,
    database: str,
    name: str,
) -> tuple[psycopg.Connection, PostgresConfig]:
    """Where the lock is held: on a hot standby, on the primary it streams from (found in
    ``pg_stat_wal_receiver``, reached with the job's own credentials), so a copy of the job
    pointed at the primary, or at another standby of it, sees this run. When the primary
    cannot be found or reached, on the standby itself, with a warning."""
    where = pg
    for _ in range(MAX_UPSTREAM_HOPS):  # a cascading standby streams from another standby
        try:
            found = pg_standby.upstream(conn)
        except psycopg.Error as err:
            found = f"its primary cannot be told ({str(err).strip()})"
        if found is None:
            break
        if isinstance(found, str):
            _standby_only(where, found)
            break
        upstream = dataclasses.replace(where, host=found[0], port=found[1])
        try:
            conn = stack.enter_context(pg_server.connect(upstream, database, application_name=name))
        except DatabaseError as err:
            _standby_only(where, f"its primary {upstream.display_host} is out of reach: {err}")
            break
        log.info(
            "%s is a hot standby: the job's lock is held on its primary %s",
            where.display_host,
            upstream.display_host,
        )
        where = upstream
    return conn, where


def _standby_only(standby: PostgresConfig, why: str) -> None:
    log.warning(
        "%s is a hot standby and %s: the job's lock is held on the standby, where a copy of "
        "this job pointed at the primary does not see it (give each its own destinations)",
        standby.display_host,
        why,
    )
