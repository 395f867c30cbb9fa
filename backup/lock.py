"""One run per job: a lock file held for the whole backup run (a second run exits 7).

The lock is local (``flock`` in ``BACKUP_LOCK_DIR``) and named after what the job does: its
destinations, its databases and its server. Two copies of the job on two machines do not see
each other's lock; across a cluster, the scheduler must forbid overlapping runs (a CronJob's
``concurrencyPolicy: Forbid``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from backup.config import Config
from backup.errors import ConfigError, LockedError


@contextlib.contextmanager
def job_lock(config: Config) -> Iterator[None]:
    """Hold the job's lock until the block ends; ``LockedError`` when another run holds it."""
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
