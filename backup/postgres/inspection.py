"""The server a run talks to, inspected once on one connection: its version, the pg_dump
that matches it, the databases to back up (BACKUP_EXCLUDE_DATABASES applied to ``all``), whether
the role is a superuser, whether it is a hot standby and how far its replay lags, and that no
pooler between them shares one server session among transactions (``pooler.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from backup.config import Config
from backup.postgres import pooler, standby
from backup.postgres import server as pg_server
from backup.postgres import tools as pg_tools

log = logging.getLogger(__name__)


@dataclass
class Server:
    """What ``inspect_server`` found; ``replay`` is the recovery state at that moment."""

    info: pg_server.ServerInfo
    tools: pg_tools.Tools
    databases: list[str]
    superuser: bool
    replay: standby.ReplayState = field(default_factory=lambda: standby.ReplayState(False))
    pooling: str = "direct"
    """``direct``, or ``session pooler`` (``pooler.require_sessions``)."""


def inspect_server(config: Config) -> Server:
    """Connect once: server version, matching client tools, the databases to back up."""
    pg = config.postgres
    first = pg.databases[0] if pg.databases else (pg.database or "postgres")
    with pg_server.connect(pg, first) as conn:
        pooling = pooler.require_sessions(pg, first, conn)
        info = pg_server.server_info(conn)
        replay = standby.replay_state(conn)
        superuser = pg_server.is_superuser(conn)
        if pg.all_databases:
            databases = _without_excluded(pg_server.list_databases(conn), config)
        else:
            databases = list(pg.databases)
            existing = set(pg_server.list_databases(conn))
            missing = [d for d in databases if d not in existing]
            if missing:
                log.warning("databases not found on the server: %s", ", ".join(missing))
    tools = pg_tools.choose_tools(info, config.pg_bin_dirs)
    log.info(
        "server %s (PostgreSQL %s, %s), using pg_dump %s from %s",
        pg.display_host,
        info.version,
        replay.describe(),
        tools.version,
        tools.bindir,
        extra={"stage": "connect", "server_version": info.version, "pg_dump": tools.version},
    )
    return Server(info, tools, databases, superuser, replay, pooling)


def _without_excluded(databases: list[str], config: Config) -> list[str]:
    """The server's databases less BACKUP_EXCLUDE_DATABASES; an excluded name the server does
    not have is a warning (a typo would back up the database the operator meant to skip)."""
    excluded = config.dump.exclude_databases
    unknown = [name for name in excluded if name not in databases]
    if unknown:
        log.warning(
            "BACKUP_EXCLUDE_DATABASES names databases the server does not have: %s",
            ", ".join(unknown),
        )
    return [name for name in databases if name not in excluded]
