"""What the job's databases are: the one place that says it, for the backup run, retention,
``status`` and the cleanups, so they never disagree on which folders are the job's.

The job answers for ``BACKUP_DATABASES`` (or ``PGDATABASE``); with ``BACKUP_DATABASES=all``, for
every database the server lists but those of ``BACKUP_EXCLUDE_DATABASES`` (outside the job, like a
database dropped from a list), and the globals. With ``BACKUP_SHARDS`` and this pod's index, only
this shard's share (``ScaleConfig.share``; the globals on shard 0): the shards never back up,
plan, clean or collect each other's databases.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from backup import manifest
from backup.config import Config
from backup.errors import DatabaseError
from backup.manifest import Scope
from backup.storage import Storage

log = logging.getLogger(__name__)


def owns_globals(config: Config) -> bool:
    """Does this pod back up (and keep) the globals? With ``all`` alone, on shard 0 alone."""
    return config.postgres.all_databases and config.scale.owns_globals


def share_of(config: Config, listed: Iterable[str]) -> list[str]:
    """The job's databases among ``listed`` (the server's list, the configured one, or those
    that have backups), in their order: with ``all``, less the excluded ones; this shard's."""
    names = list(listed)
    if config.postgres.all_databases:
        excluded = set(config.dump.exclude_databases)
        names = [name for name in names if name not in excluded]
    return config.scale.share(names)


def scope_of(config: Config, listed: Iterable[str]) -> Scope:
    """The job's ``Scope`` among ``listed`` (``share_of``), with the globals it owns."""
    return Scope(frozenset(share_of(config, listed)), globals=owns_globals(config))


def configured_scope(config: Config) -> Scope:
    """The job's ``Scope`` as configured: the named databases, or with ``all`` those the server
    lists now (one connection; a ``DatabaseError`` when it cannot be reached)."""
    pg = config.postgres
    if not pg.all_databases:
        return scope_of(config, pg.databases)
    from backup.postgres import server as pg_server  # psycopg: only to connect

    with pg_server.connect(pg, pg.database or "postgres") as conn:
        return scope_of(config, pg_server.list_databases(conn))


def scope_or_backed_up(config: Config, storages: list[Storage]) -> Scope:
    """``configured_scope``; with ``all`` and the server unreachable, the databases that have
    backups but the excluded ones (``status`` answers about freshness while the database is
    down)."""
    try:
        return configured_scope(config)
    except DatabaseError as err:
        log.warning(
            "cannot list the server's databases (%s): status covers the databases that have "
            "backups",
            err.message,
        )
    seen = {m.database for s in storages for m in manifest.read_all(s) if m.database}
    return scope_of(config, sorted(seen))
