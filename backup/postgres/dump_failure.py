"""Why a database dump failed, in words an operator can act on: the hint a failed dump's error
gets once the facts gathered during it are known (the lock it waited for, the recovery
conflicts a standby counted meanwhile, the statement timeout pg_dump reported).
"""

from __future__ import annotations

from backup.errors import BackupError, DatabaseError
from backup.postgres.locks import LockWait
from backup.postgres.standby import CONFLICT_HINT, REPLAY_LOCK_HINT

STATEMENT_TIMEOUT_HINT = (
    "pg_dump could not lock a table within BACKUP_LOCK_WAIT_TIMEOUT: a migration or "
    "long transaction holds it; run the backup later or raise BACKUP_LOCK_WAIT_TIMEOUT"
)


def explain(
    err: BackupError,
    *,
    wait: LockWait | None,
    conflicts: list[str],
    standby: bool,
) -> None:
    """Give ``err`` the hint its facts call for: ``wait``, the last table lock pg_dump waited
    for; ``conflicts``, the kinds of recovery conflict a standby counted during the dump."""
    if not isinstance(err, DatabaseError):
        return
    if conflicts or "conflict with recovery" in err.message:
        err.hint = CONFLICT_HINT.format(kinds=", ".join(conflicts) or "see the message")
    elif wait is not None and standby and wait.blocker_backend == "startup":
        err.hint = REPLAY_LOCK_HINT.format(table=wait.table)
    elif wait is not None:
        err.hint = (
            f"pg_dump waited for a lock on table {wait.table} held by session "
            f"{wait.blocker_pid} ({wait.blocker_application or 'no application name'}): "
            "run the backup when no migration or long transaction holds it, or raise "
            "BACKUP_LOCK_WAIT_TIMEOUT"
        )
    elif "due to statement timeout" in err.message:
        # pg_dump's --lock-wait-timeout is a statement_timeout on its LOCK TABLE.
        err.hint = STATEMENT_TIMEOUT_HINT
