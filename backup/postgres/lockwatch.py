"""What a dump waits for: a thread that watches one backend and logs the locks it waits on.

pg_dump takes an ``ACCESS SHARE`` lock on every table it dumps; behind a migration's ``ACCESS
EXCLUSIVE`` lock it waits without a word. ``LockWatcher`` finds pg_dump's backend by its
``application_name`` (the job sets a unique one through ``PGAPPNAME``) and, on its own
connection, logs the table and the session blocking it (pid, user, application, state) when the
wait is first seen and every ``repeat_s`` seconds while it lasts. The connection is opened at
the first look, one ``poll_s`` after the dump starts: a dump that ends sooner costs no session.
The blocking session's statement is not logged: another session's SQL may hold secrets. It
never raises: a watcher that cannot connect only says so in the debug log.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from backup.config import PostgresConfig
from backup.errors import BackupError
from backup.postgres import locks, server

log = logging.getLogger(__name__)

POLL_S = 1.0
REPEAT_S = 30.0
STATEMENT_TIMEOUT_S = 5.0


class LockWatcher:
    """Log, while the backends named ``application_name`` wait for a table lock, who blocks."""

    def __init__(
        self,
        pg: PostgresConfig,
        database: str,
        application_name: str,
        label: str,
        poll_s: float = POLL_S,
        repeat_s: float = REPEAT_S,
    ) -> None:
        self.pg = pg
        self.database = database
        self.application_name = application_name
        self.label = label
        self.poll_s = poll_s
        self.repeat_s = repeat_s
        self.last_wait: locks.LockWait | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-watcher", daemon=True)

    def __enter__(self) -> LockWatcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        # A daemon: a watcher stuck on a hung server must not delay the run's end or its abort.
        self._thread.join(timeout=2 * self.poll_s)

    def _run(self) -> None:
        # Connected at the first look, one poll after the start, not before: a dump that ends
        # sooner (most small databases) costs no session (with BACKUP_PARALLEL_DATABASES and
        # hundreds of databases, one connection and one server backend fewer per database).
        if self._stop.wait(self.poll_s):
            return
        try:
            with server.connect(
                self.pg, self.database, application_name="pgbackup-job lock watcher"
            ) as conn:
                conn.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_S * 1000)}")
                logged_at: dict[tuple[str, int], float] = {}
                while True:
                    for wait in locks.lock_waits(conn, self.application_name):
                        key = (wait.table, wait.blocker_pid)
                        if wait.waited_s - logged_at.get(key, -self.repeat_s) < self.repeat_s:
                            continue
                        logged_at[key] = wait.waited_s
                        self.last_wait = wait
                        self._log(wait)
                    if self._stop.wait(self.poll_s):
                        return
        except (BackupError, OSError) as err:
            log.debug("lock watcher stopped: %s", err)

    def _log(self, wait: locks.LockWait) -> None:
        log.warning(
            "%s waiting %.0f s for a lock on table %s, held by session %d (user %s, "
            "application %s, %s)",
            self.label,
            wait.waited_s,
            wait.table,
            wait.blocker_pid,
            wait.blocker_user or "?",
            wait.blocker_application or "none",
            wait.blocker_state or "?",
            extra={
                "stage": "lock_wait",
                "database": self.label,
                "table": wait.table,
                "blocker_pid": wait.blocker_pid,
                "seconds": round(wait.waited_s, 1),
            },
        )
