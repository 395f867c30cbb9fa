"""WAL replay paused on a hot standby for the length of each dump (BACKUP_STANDBY_PAUSE_REPLAY).

A paused standby replays nothing, so no recovery conflict can cancel the dump, whatever
``max_standby_streaming_delay`` says, and the primary is not asked to keep dead rows
(``hot_standby_feedback``). ``ReplayPause`` wraps one database's dump:

- the dump's snapshot is exported first (the exact counts' one, else one of its own kept open
  in the dump's database) and pg_dump imports it (``--snapshot``); only then is replay paused
  (``pg_wal_replay_pause()``), and the pause is awaited (PostgreSQL 14+: ``paused``, not just
  ``pause requested``) before pg_dump starts;
- it is resumed (``pg_wal_replay_resume()``) when the block ends, whatever ended it: the dump
  done (after the exact counts taken in its snapshot), failed, SIGTERM, BACKUP_TIMEOUT (both
  unwind through the block). Replay runs again between the databases of one run.

Several runs may pause one standby at once (one job per database, all at 02:00): each pausing
session holds a shared advisory lock (``COORDINATION_DATABASE``: advisory locks work on a standby
and are never replayed) and names itself ``APPLICATION_PREFIX ...`` in ``pg_stat_activity``;
the last to leave, the one that gets the lock exclusively, resumes. A pause found already made
while no run of the job holds one is an operator's: it is used, never resumed.

A run that is SIGKILLed cannot resume. Before pausing, the run writes a marker in
BACKUP_LOCK_DIR (the replay position where it paused, its pid); ``resume_left_over``, at the
start of the next run, resumes a pause a dead run left there, only when replay is still paused
at that very position (an operator who resumed and paused again is left alone). A marker lost
with its pod leaves replay paused: BACKUP_STANDBY_MAX_LAG then fails the runs (exit 3) and the
standby lag alert fires; ``RESUME_COMMAND`` resumes by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from backup.config import Config, PostgresConfig
from backup.errors import ConfigError, DatabaseError
from backup.postgres import server as pg_server
from backup.postgres.processes import pid_alive

log = logging.getLogger(__name__)

APPLICATION_PREFIX = "pgbackup-job replay pause"
COORDINATION_DATABASE = "postgres"
PAUSE_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"pgbackup-job|replay pause").digest()[:8], "big", signed=True
)
RESUME_COMMAND = "psql -c 'SELECT pg_wal_replay_resume()'"
PAUSE_WAIT_S = 30.0
RIGHTS_HINT = (
    "run the job as a superuser, or, on the primary (grants are replicated), in database "
    f"{COORDINATION_DATABASE}: GRANT EXECUTE ON FUNCTION pg_wal_replay_pause(), "
    "pg_wal_replay_resume() TO <the job's role>"
)


def rights_problem(conn: psycopg.Connection) -> str | None:
    """Why the role may not pause and resume replay, or None."""
    row = conn.execute(
        "SELECT has_function_privilege('pg_catalog.pg_wal_replay_pause()', 'EXECUTE'),"
        " has_function_privilege('pg_catalog.pg_wal_replay_resume()', 'EXECUTE')"
    ).fetchone()
    if row and row[0] and row[1]:
        return None
    database = conn.info.dbname
    return (
        "BACKUP_STANDBY_PAUSE_REPLAY=true: the job's role may not execute "
        f"pg_wal_replay_pause() and pg_wal_replay_resume() in database {database} of the "
        "standby, where the job pauses replay"
    )


def refusal(config: Config, standby: bool) -> ConfigError | None:
    """With BACKUP_STANDBY_PAUSE_REPLAY on a standby: a role without the rights (exit 2),
    before any dump."""
    if not config.standby_pause_replay:
        return None
    if not standby:
        log.info(
            "BACKUP_STANDBY_PAUSE_REPLAY: the server is a primary, there is no replay to pause"
        )
        return None
    with _coordination(config.postgres, _first_database(config), "check") as conn:
        problem = rights_problem(conn)
    return ConfigError(problem, hint=RIGHTS_HINT) if problem else None


def settings_report(config: Config, conn: psycopg.Connection) -> list[str]:
    """``check``'s lines on a standby: the settings that decide whether a long dump can be
    cancelled by recovery, what to do, and the rights BACKUP_STANDBY_PAUSE_REPLAY needs."""
    values = {
        name: conn.execute(f"SHOW {name}").fetchone()[0]
        for name in ("max_standby_streaming_delay", "max_standby_archive_delay")
    }
    feedback = conn.execute("SHOW hot_standby_feedback").fetchone()[0]
    delay = values["max_standby_streaming_delay"]
    settings = (
        f"standby settings: max_standby_streaming_delay={delay}, "
        f"max_standby_archive_delay={values['max_standby_archive_delay']}, "
        f"hot_standby_feedback={feedback}"
    )
    if config.standby_pause_replay:
        problem = rights_problem(conn)
        if problem:
            raise ConfigError(f"{settings}; {problem}", hint=RIGHTS_HINT)
        return [
            settings,
            "standby: BACKUP_STANDBY_PAUSE_REPLAY=true, the role may pause and resume replay: "
            "replay is paused for each dump, no recovery conflict can cancel it (the standby "
            "falls behind during the dump; BACKUP_TIMEOUT bounds it)",
        ]
    if delay == "-1":
        advice = (
            "replay waits for the dump instead of cancelling it (the standby falls behind "
            "during a long dump)"
        )
    else:
        unless = (
            "a lock replayed from the primary (a migration, TRUNCATE)"
            if feedback == "on"
            else "a VACUUM or a lock replayed from the primary"
        )
        advice = (
            f"a dump longer than {delay} can be cancelled by {unless}: set "
            "BACKUP_STANDBY_PAUSE_REPLAY=true (replay paused during each dump), or on the "
            "standby max_standby_streaming_delay=-1"
            + ("" if feedback == "on" else " and hot_standby_feedback=on")
        )
    return [settings, f"standby: {advice}"]


def check_standby(config: Config) -> list[str]:
    """``settings_report`` on a connection of its own (``check``, on a standby)."""
    with _coordination(config.postgres, _first_database(config), "check") as conn:
        return settings_report(config, conn)


def _first_database(config: Config) -> str:
    pg = config.postgres
    return pg.databases[0] if pg.databases else (pg.database or "postgres")


class ReplayPause:
    """Replay paused for one database's dump on a standby (``pause``), resumed on leaving."""

    def __init__(self, config: Config, database: str) -> None:
        self.pg = config.postgres
        self.database = database
        self.marker = _marker_dir(config) / f"{_marker_prefix(self.pg)}{os.getpid()}.json"
        self._stack = contextlib.ExitStack()
        self._conn: psycopg.Connection | None = None
        self._snapshot_conn: psycopg.Connection | None = None
        self._owned = False

    def __enter__(self) -> ReplayPause:
        return self

    def pause(self, snapshot: str | None) -> str:
        """Pause replay once the dump's snapshot exists: ``snapshot`` (exported elsewhere and
        kept open by the caller), else one exported here; returns the snapshot pg_dump imports."""
        if snapshot is None:
            snap = self._stack.enter_context(
                pg_server.connect(self.pg, self.database, autocommit=False)
            )
            self._snapshot_conn = snap
            snap.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = str(snap.execute("SELECT pg_export_snapshot()").fetchone()[0])
        conn = self._stack.enter_context(_coordination(self.pg, self.database, "check"))
        self._conn = conn
        conn.execute("SELECT pg_advisory_lock_shared(%s)", (PAUSE_LOCK_KEY,))
        paused = conn.execute("SELECT pg_is_wal_replay_paused()").fetchone()[0]
        if paused and not _job_pausers(conn):
            conn.execute("SELECT pg_advisory_unlock_shared(%s)", (PAUSE_LOCK_KEY,))
            log.warning(
                "replay on the standby was already paused, not by this job: it stays paused "
                "after the dump of %s (%s resumes it)",
                self.database,
                RESUME_COMMAND,
                extra={"stage": "dump", "database": self.database},
            )
            return snapshot
        conn.execute(
            "SELECT set_config('application_name', %s, false)",
            (f"{APPLICATION_PREFIX} {socket.gethostname()[:24]} pid {os.getpid()}"[:63],),
        )
        self._owned = True
        conn.execute("SELECT pg_wal_replay_pause()")
        lsn = _await_pause(conn)
        _write_marker(self.marker, self.pg, lsn)
        log.info(
            "replay paused on the standby at %s for the dump of %s",
            lsn,
            self.database,
            extra={"stage": "dump", "database": self.database},
        )
        return snapshot

    def __exit__(self, *exc: object) -> None:
        try:
            if self._snapshot_conn is not None:  # released before replay goes on
                _quietly(self._snapshot_conn.rollback)
            if self._owned:
                self._leave()
        finally:
            self._stack.close()

    def _leave(self) -> None:
        try:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                conn = self._stack.enter_context(_coordination(self.pg, self.database, "resume"))
            else:
                conn.execute("SELECT pg_advisory_unlock_shared(%s)", (PAUSE_LOCK_KEY,))
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (PAUSE_LOCK_KEY,)).fetchone()[0]:
                conn.execute("SELECT pg_wal_replay_resume()")
                conn.execute("SELECT pg_advisory_unlock(%s)", (PAUSE_LOCK_KEY,))
                log.info("replay resumed on the standby after the dump of %s", self.database)
            else:
                log.info("replay stays paused on the standby for another run's dump")
        except (DatabaseError, psycopg.Error) as err:
            if isinstance(err, DatabaseError) and type(err) is not DatabaseError:
                raise  # BACKUP_TIMEOUT's alarm meanwhile: the marker stays for the next run
            message = err.message if isinstance(err, DatabaseError) else str(err).strip()
            log.error(
                "could not resume replay on the standby after the dump of %s: %s; the next "
                "run resumes it, or by hand: %s",
                self.database,
                message,
                RESUME_COMMAND,
            )
            return
        self.marker.unlink(missing_ok=True)


def resume_left_over(config: Config) -> None:
    """Resume a pause that a run of this job left on the standby when it died (SIGKILL, OOM):
    a marker in BACKUP_LOCK_DIR of a process no longer alive, and replay still paused where
    it paused it. Never raises: the run then goes on (and fails where it must)."""
    folder = _marker_dir(config)
    markers = []
    for path in folder.glob(f"{_marker_prefix(config.postgres)}*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(path.read_text())
            pid = int(record["pid"])
            if pid == os.getpid() or not pid_alive(pid):
                markers.append((path, record))
    if not markers:
        return
    try:
        with _coordination(config.postgres, _first_database(config), "resume") as conn:
            _resume_if_ours(conn, [record for _, record in markers])
    except DatabaseError as err:
        log.warning("could not look at replay left paused by an earlier run: %s", err.message)
        return
    for path, _ in markers:
        path.unlink(missing_ok=True)


def _resume_if_ours(conn: psycopg.Connection, records: list[dict[str, Any]]) -> None:
    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
        return
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (PAUSE_LOCK_KEY,)).fetchone()[0]:
        return  # a live run's dump holds the pause; it resumes it
    try:
        paused, lsn = conn.execute(
            "SELECT pg_is_wal_replay_paused(), pg_last_wal_replay_lsn()::text"
        ).fetchone()
        mine = [r for r in records if r.get("replay_lsn") == lsn]
        if paused and mine:
            conn.execute("SELECT pg_wal_replay_resume()")
            log.warning(
                "replay on the standby was left paused at %s since %s by a run of this job "
                "that did not end (pid %s): resumed",
                lsn,
                mine[0].get("paused_at"),
                mine[0].get("pid"),
            )
        elif paused:
            log.warning(
                "replay on the standby is paused at %s, not where a run of this job left it: "
                "left paused (%s resumes it)",
                lsn,
                RESUME_COMMAND,
            )
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (PAUSE_LOCK_KEY,))


@contextlib.contextmanager
def _coordination(
    pg: PostgresConfig, fallback: str | None, what: str
) -> Iterator[psycopg.Connection]:
    """A session in ``COORDINATION_DATABASE`` (advisory locks are per database: every run on
    the standby must meet in the same one), else, when it cannot be reached, in ``fallback``."""
    name = f"pgbackup-job replay {what} pid {os.getpid()}"
    with contextlib.ExitStack() as stack:
        try:
            conn = stack.enter_context(
                pg_server.connect(pg, COORDINATION_DATABASE, application_name=name)
            )
        except DatabaseError as err:
            if fallback is None:
                raise
            log.debug("replay pause: %s; meeting other runs in %s", err.message, fallback)
            conn = stack.enter_context(pg_server.connect(pg, fallback, application_name=name))
        yield conn


def _job_pausers(conn: psycopg.Connection) -> int:
    """Sessions of any run of the job holding a pause now (other than this one)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s"
        " AND pid <> pg_backend_pid()",
        (f"{APPLICATION_PREFIX} %",),
    ).fetchone()
    return int(row[0]) if row else 0


def _await_pause(conn: psycopg.Connection) -> str:
    """The replay position once the pause took effect (14+: ``pause requested`` until replay
    stops between two records)."""
    if conn.info.server_version >= 140000:
        deadline = time.monotonic() + PAUSE_WAIT_S
        while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
            if time.monotonic() >= deadline:
                log.warning("replay did not pause within %.0f s; dumping anyway", PAUSE_WAIT_S)
                break
            time.sleep(0.02)
    return str(conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0])


def _marker_dir(config: Config) -> Path:
    return Path(config.lock_dir)


def _marker_prefix(pg: PostgresConfig) -> str:
    digest = hashlib.sha256(f"replay|{pg.display_host}".encode()).hexdigest()[:16]
    return f"pgbackup-replay-paused-{digest}-"


def _write_marker(path: Path, pg: PostgresConfig, lsn: str) -> None:
    record = {
        "server": pg.display_host,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "replay_lsn": lsn,
        "paused_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        path.write_text(json.dumps(record))
    except OSError as err:
        log.warning(
            "replay paused, but its marker %s could not be written (%s): if this run is "
            "killed, resume replay by hand: %s",
            path,
            err.strerror,
            RESUME_COMMAND,
        )


def _quietly(action: Any) -> None:
    with contextlib.suppress(psycopg.Error):
        action()
