"""Hot standbys: whether the server is one, how far behind the primary its data is, and what a
recovery conflict did to a dump there.

A standby's data is as old as the last transaction it replayed. ``replay_state`` reads that
once per run; ``stale_problem`` turns a lag above ``BACKUP_STANDBY_MAX_LAG`` into the error
that stops the run before any dump (a backup of stale data looks like any other backup).
``Conflicts`` counts, per database, the sessions the standby cancelled or ended to keep
replaying (``pg_stat_database_conflicts``): when a dump fails and the count grew meanwhile, the
failure was a recovery conflict whatever pg_dump printed (an idle dump's session is ended with
"server closed the connection unexpectedly" on its side).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from backup.config import Config
from backup.errors import BackupError, ConfigError, DatabaseError

log = logging.getLogger(__name__)

CONFLICT_KINDS = ("tablespace", "lock", "snapshot", "bufferpin", "deadlock")
# A cancelled backend reports its conflict as it ends; the job may see pg_dump exit first.
CONFLICT_SETTLE_S = 2.0

CONFLICT_HINT = (
    "the standby cancelled the dump to keep replaying the primary's WAL (conflict with "
    "recovery: {kinds}). Either set BACKUP_STANDBY_PAUSE_REPLAY=true (the job pauses replay "
    "for each dump; its role needs EXECUTE on pg_wal_replay_pause/resume), or on the standby "
    "set max_standby_streaming_delay (and max_standby_archive_delay) to -1 or longer than a "
    "dump, and hot_standby_feedback=on so the primary keeps the rows the dump still reads; or "
    "back up from the primary"
)
REPLAY_LOCK_HINT = (
    "pg_dump waited for a lock on table {table} held by the standby's WAL replay: a "
    "transaction on the primary holds an ACCESS EXCLUSIVE lock on it (a migration, TRUNCATE, "
    "VACUUM FULL, a long ALTER). Run the backup when none does, or raise "
    "BACKUP_LOCK_WAIT_TIMEOUT; max_standby_streaming_delay=-1 on the standby keeps the dump "
    "from being cancelled meanwhile"
)


@dataclass(frozen=True)
class ReplayState:
    """Where the server is in recovery, as read at one moment (``now`` is the server's)."""

    standby: bool
    replay_timestamp: datetime | None = None
    """Commit time, on the primary, of the last transaction the standby replayed."""
    lag_s: float | None = None
    """How far the standby's data is behind: 0 when it has replayed all it received from a
    primary it streams from; else the age of its last replayed transaction (an idle primary
    makes that look old); None when nothing was replayed since it started."""
    receiver: str | None = None
    """The WAL receiver's status (``streaming``; ``running`` when the role may not see more),
    or None: none running (archive recovery, or the primary unreachable)."""
    paused: bool = False

    def manifest_record(self) -> dict[str, Any]:
        """The manifest's ``source``: ``standby``; on a standby, ``replay_timestamp`` and
        ``replay_lag_s`` when known."""
        if not self.standby:
            return {"standby": False}
        record: dict[str, Any] = {"standby": True}
        if self.replay_timestamp is not None:
            record["replay_timestamp"] = self.replay_timestamp.isoformat()
        if self.lag_s is not None:
            record["replay_lag_s"] = round(self.lag_s, 3)
        return record

    def describe(self) -> str:
        """One phrase for ``check`` and the log: what the server is, how fresh its data is."""
        if not self.standby:
            return "a primary (read-write)"
        parts = ["a hot standby"]
        if self.paused:
            parts.append("replay PAUSED")
        parts.append(f"WAL receiver {self.receiver or 'not running'}")
        if self.replay_timestamp is not None:
            parts.append(f"last replayed transaction {self.replay_timestamp:%Y-%m-%d %H:%M:%S %Z}")
        if self.lag_s is not None:
            parts.append(f"replay lag {_duration(self.lag_s)}")
        else:
            parts.append("replay lag unknown (nothing replayed since it started)")
        return ", ".join(parts)


def replay_state(conn: psycopg.Connection) -> ReplayState:
    """Read the server's recovery state (three cheap function calls and one view row)."""
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if not (row and row[0]):
        return ReplayState(standby=False)
    row = conn.execute(
        "SELECT pg_last_xact_replay_timestamp(), pg_is_wal_replay_paused(),"
        " pg_last_wal_receive_lsn() IS NOT NULL"
        "   AND pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(),"
        " (SELECT coalesce(status, 'running') FROM pg_stat_wal_receiver WHERE pid IS NOT NULL),"
        " extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
    ).fetchone()
    assert row is not None
    # The receiver's status is shown to superusers and pg_read_all_stats only; its pid to all.
    timestamp, paused, caught_up, receiver, age_s = row
    if receiver == "running":
        receiver = "streaming" if caught_up else "running"
    if receiver == "streaming" and caught_up and not paused:
        lag_s: float | None = 0.0
    else:
        lag_s = max(0.0, float(age_s)) if age_s is not None else None
    return ReplayState(
        standby=True,
        replay_timestamp=timestamp,
        lag_s=lag_s,
        receiver=receiver,
        paused=bool(paused),
    )


def upstream(conn: psycopg.Connection) -> tuple[str, str] | str | None:
    """Where this standby streams from: ``(host, port)``; None on a primary; a reason string
    when a standby cannot tell (no WAL receiver, or a role that may not see it)."""
    row = conn.execute(
        "SELECT pg_is_in_recovery(),"
        " (SELECT pid FROM pg_stat_wal_receiver WHERE pid IS NOT NULL),"
        " (SELECT sender_host FROM pg_stat_wal_receiver),"
        " (SELECT sender_port FROM pg_stat_wal_receiver)"
    ).fetchone()
    assert row is not None
    recovering, pid, host, port = row
    if not recovering:
        return None
    if pid is None:
        return "it has no WAL receiver (archive recovery, or its primary is unreachable)"
    if not host or port is None:
        return (
            "the job's role may not see where it streams from (pg_stat_wal_receiver needs "
            "pg_read_all_stats)"
        )
    return str(host), str(port)


def stale_problem(state: ReplayState, max_lag_s: float) -> str | None:
    """Why a backup now would hold stale data, or None: the standby's lag is above
    ``max_lag_s`` (0: never)."""
    if not state.standby or not max_lag_s or state.lag_s is None or state.lag_s <= max_lag_s:
        return None
    why = []
    if state.paused:
        why.append("its replay is paused (pg_wal_replay_resume() resumes it)")
    if state.receiver != "streaming":
        why.append("it is not streaming from a primary")
    cause = f": {' and '.join(why)}" if why else ""
    return (
        f"the standby's data is {_duration(state.lag_s)} behind the primary, more than "
        f"BACKUP_STANDBY_MAX_LAG ({_duration(max_lag_s)}){cause}; a backup now would be "
        "of stale data"
    )


STALE_HINT = (
    "look at replication: pg_stat_wal_receiver on the standby, pg_stat_replication on the "
    "primary, the standby's log; an idle primary with no WAL receiver also looks stale. "
    "Raise BACKUP_STANDBY_MAX_LAG for a standby delayed on purpose (0 turns the check off)"
)


_CONFLICTS_QUERY = (
    "SELECT confl_tablespace, confl_lock, confl_snapshot, confl_bufferpin, confl_deadlock "
    "FROM pg_stat_database_conflicts WHERE datname = %s"
)


class Conflicts:
    """The recovery-conflict counters of one database on a standby, read before a dump."""

    def __init__(self, conn: psycopg.Connection, database: str) -> None:
        self.database = database
        self.before = self._read(conn)

    def _read(self, conn: psycopg.Connection) -> dict[str, int]:
        conn.execute("SELECT pg_stat_clear_snapshot()")  # a fresh reading, not the cached one
        row = conn.execute(_CONFLICTS_QUERY, (self.database,)).fetchone()
        return dict(zip(CONFLICT_KINDS, (int(v or 0) for v in row), strict=True)) if row else {}

    def since(self, conn: psycopg.Connection, settle_s: float = CONFLICT_SETTLE_S) -> list[str]:
        """The kinds of conflict counted since the first reading (``lock``, ``snapshot``...),
        waiting up to ``settle_s`` for the ended session to report its own."""
        deadline = time.monotonic() + settle_s
        while True:
            now = self._read(conn)
            grown = [k for k in CONFLICT_KINDS if now.get(k, 0) > self.before.get(k, 0)]
            if grown or time.monotonic() >= deadline:
                return grown
            time.sleep(0.1)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def refusal(config: Config, state: ReplayState) -> BackupError | None:
    """What stops a run on this server before any dump: a test restore aimed at a standby
    (read-only: exit 2), or a standby whose data is older than BACKUP_STANDBY_MAX_LAG (exit 3)."""
    if state.standby and config.verify == "restore" and not config.verify_database_url:
        return ConfigError(
            "BACKUP_VERIFY=restore: the server is a hot standby (read-only), the test restore "
            "cannot create its scratch database there",
            hint="set VERIFY_DATABASE_URL to a writable server (the primary, or a scratch "
            "server with the same major version)",
        )
    problem = stale_problem(state, config.standby_max_lag_s)
    if problem:
        return DatabaseError(problem, hint=STALE_HINT)
    return None
