"""The start of one dump: its name and object key, the name pg_dump connects with, and what it
reads (the snapshot pg_dump imports, a standby's replay paused for it, the lock watcher, the
server's tables), gathered in ``Dump`` as they become known, so a failure can tell what was
seen so far; and the ``Facts`` its manifest records, the same for both formats."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from backup import manifest
from backup.config import Config
from backup.dump.commit import Facts
from backup.manifest.catalog import unused_moment
from backup.postgres import contents, standby
from backup.postgres import replay as replay_pause
from backup.postgres import server as pg_server
from backup.postgres import tools as pg_tools
from backup.postgres.inspection import Server
from backup.postgres.lockwatch import LockWatcher
from backup.storage import Storage
from backup.stream.codec import object_suffix

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_dump_counter = itertools.count(1)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Dump:
    """One dump (``database=None``: the globals), filled in as it starts."""

    database: str | None
    label: str
    name: str
    key: str
    started_at: datetime
    env: dict[str, str]
    application_name: str
    replay: standby.ReplayState
    """Where a standby's replay was when this dump started (the manifest's ``source``)."""
    argv: list[str] = field(default_factory=list)
    snapshot: str | None = None
    snapshot_conn: psycopg.Connection | None = None  # its own session (exact: its snapshot)
    catalog: dict[int, str] = field(default_factory=dict)
    watcher: LockWatcher | None = None
    conflicts: standby.Conflicts | None = None

    def facts(
        self,
        config: Config,
        server: Server,
        seconds: float,
        described: tuple[dict[str, Any], dict[str, Any]],
    ) -> Facts:
        """What its manifest records, now that the dump is over."""
        return Facts(
            self.name,
            self.database,
            self.started_at,
            now_utc(),
            seconds,
            encryption_record(config),
            (server.tools.version, server.info.version),
            described,
            self.replay.manifest_record(),
        )


def named(config: Config, server: Server, storages: list[Storage], database: str | None) -> Dump:
    """The dump's name, object key and moment (one no backup of ``database`` has yet), and the
    libpq environment with a name of its own for pg_dump."""
    started_at = unused_moment(storages, database)
    suffix = object_suffix(config.codec.compression, config.codec.encrypted)
    env = config.postgres.libpq_env(database)
    # A name of its own, so the lock watcher (and an operator) can find this dump's backend.
    application_name = f"pg_dump pgbackup-job {os.getpid()} {next(_dump_counter)}"
    env["PGAPPNAME"] = application_name
    return Dump(
        database=database,
        label=database if database is not None else "globals",
        name=manifest.backup_name(database, started_at)
        if database is not None
        else manifest.globals_name(started_at),
        key=manifest.object_key(database, started_at, suffix),
        started_at=started_at,
        env=env,
        application_name=application_name,
        replay=server.replay,
    )


def prepare_globals(server: Server, dump: Dump) -> None:
    """pg_dumpall's argv; without superuser rights, no role passwords (said in the log)."""
    if not server.superuser:
        log.warning(
            "not a superuser: role passwords are left out of the globals "
            "(pg_dumpall --no-role-passwords)"
        )
    dump.argv = pg_tools.pg_dumpall_argv(server.tools, role_passwords=server.superuser)


def prepare_database(
    config: Config, server: Server, stack: contextlib.ExitStack, dump: Dump
) -> None:
    """Before pg_dump starts: on a standby, where replay is and its conflicts so far (and replay
    paused with BACKUP_STANDBY_PAUSE_REPLAY); the snapshot pg_dump imports and the tables it
    holds; pg_dump's argv; the lock watcher. All held by ``stack`` until the dump is over."""
    database = dump.database
    assert database is not None
    if server.replay.standby:
        # Where this database's dump starts: its replay time, its conflicts so far.
        with pg_server.connect(config.postgres, database) as conn:
            dump.conflicts = standby.Conflicts(conn, database)
            dump.replay = standby.replay_state(conn)
    pause = (  # entered first: replay resumes after the snapshot is released
        stack.enter_context(replay_pause.ReplayPause(config, database))
        if server.replay.standby and config.standby_pause_replay
        else None
    )
    dump.snapshot_conn, dump.snapshot = contents.open_snapshot(config, stack, database)
    if pause is not None:  # pg_dump imports the snapshot taken before the pause
        dump.snapshot = pause.pause(dump.snapshot)
    dump.catalog = contents.server_tables(config, database, dump.snapshot_conn)
    dump.argv = pg_tools.pg_dump_argv(
        server.tools, dump.snapshot, config.lock_wait_timeout_s, config.dump.pg_dump_options()
    )
    dump.watcher = stack.enter_context(
        LockWatcher(config.postgres, database, dump.application_name, f"pg_dump of {dump.label}")
    )


def encryption_record(config: Config) -> dict[str, object] | None:
    if not config.codec.encrypted:
        return None
    from backup.stream.age import recipient_fingerprints

    return {"format": "age", "recipients": recipient_fingerprints(config.codec)}
