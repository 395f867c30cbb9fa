"""How one job's work is spread: several databases dumped at once by one run
(``BACKUP_PARALLEL_DATABASES``), and the job's databases split over several pods, the shards
of a Kubernetes Indexed Job (``BACKUP_SHARDS``; the pod's index from ``JOB_COMPLETION_INDEX`` or
``BACKUP_SHARD_INDEX``). ``database.read_scale`` fills ``ScaleConfig``.

A database belongs to one shard, chosen from its name alone (``shard_of``): the same shard backs
it up, prunes it, cleans its folder and keeps its history, run after run, however many other
databases come and go. The globals belong to shard 0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from backup.errors import ConfigError

# Each database in flight holds one stream (pipe buffer, compressor, one queue and the parts in
# flight per destination) and three server connections (the snapshot, pg_dump, the lock
# watcher): past a few dozen, a run only waits on the server and the network harder.
MAX_PARALLEL_DATABASES = 32
MAX_SHARDS = 1000


@dataclass(frozen=True)
class ScaleConfig:
    """How one job's work is spread (``config/scale.py`` reads it): several databases dumped
    at once by one run, and the job's databases split over several pods (shards)."""

    parallel_databases: int = 1
    """BACKUP_PARALLEL_DATABASES: how many databases one run dumps and uploads at once."""
    shards: int = 1
    """BACKUP_SHARDS: how many pods share the job's databases (1: not sharded)."""
    shard_index: int | None = None
    """This pod's shard, 0 to shards - 1 (BACKUP_SHARD_INDEX, else JOB_COMPLETION_INDEX);
    None: no index given, which only status, list, restore, verify and check accept (they
    then see every shard's databases)."""

    @property
    def sharded(self) -> bool:
        return self.shards > 1

    def owns(self, database: str) -> bool:
        """Does this pod answer for ``database``? Every database when not sharded or when no
        index is given (status of the whole job)."""
        if not self.sharded or self.shard_index is None:
            return True
        return shard_of(database, self.shards) == self.shard_index

    def share(self, databases: list[str]) -> list[str]:
        """This pod's share of ``databases``, in their order."""
        return [database for database in databases if self.owns(database)]

    @property
    def owns_globals(self) -> bool:
        """The globals (roles, tablespaces) belong to shard 0 alone."""
        return not self.sharded or self.shard_index in (None, 0)

    def describe(self) -> str:
        """``shard 2 of 4`` (the index counted from 0), or "" when not sharded."""
        if not self.sharded or self.shard_index is None:
            return ""
        return f"shard {self.shard_index} of {self.shards}"

    def require_index(self) -> None:
        """Refuse (exit 2) a sharded job without its index: the commands that back up or
        delete must know which databases are theirs."""
        if self.sharded and self.shard_index is None:
            raise ConfigError(
                f"BACKUP_SHARDS={self.shards} needs this pod's shard index: "
                "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job sets it) or BACKUP_SHARD_INDEX",
                hint="run the job as an Indexed Job (completionMode: Indexed, completions: "
                "BACKUP_SHARDS), or set BACKUP_SHARD_INDEX to 0..BACKUP_SHARDS-1",
            )


def shard_of(database: str, shards: int) -> int:
    """The shard that backs ``database`` up: a hash of its name modulo ``shards``. It depends
    on the name alone, so adding or dropping other databases never moves it (changing
    ``shards`` does)."""
    digest = hashlib.sha256(database.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards
