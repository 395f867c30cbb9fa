"""Helpers for end-to-end tests: fake tool directories, waiting for a dump in progress."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.fixtures.pgcluster import Cluster

REAL_BIN = Path("/usr/lib/postgresql/15/bin")


def fake_pg_dump(directory: Path, body: str) -> Path:
    """A directory whose ``pg_dump`` says it is 15.x and runs ``body`` (a sh script) when
    dumping; the other tools are the real ones. ``BACKUP_PG_BIN_DIRS`` points the job at it."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then exec {REAL_BIN}/pg_dump --version; fi\n'
        f"{body}\n"
    )
    script.chmod(0o755)
    for tool in ("pg_restore", "psql", "pg_dumpall"):
        link = directory / tool
        if not link.exists():
            link.symlink_to(REAL_BIN / tool)
    return directory


def wait_for_pg_dump(
    cluster: Cluster, database: str, condition: str, what: str, timeout_s: float = 60
) -> int:
    """PID of pg_dump's backend once ``condition`` (SQL on pg_stat_activity) holds for it."""
    deadline = time.monotonic() + timeout_s
    with cluster.connect() as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                f"AND application_name LIKE 'pg_dump%%' AND {condition}",
                (database,),
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.02)
    raise AssertionError(f"pg_dump never {what}")


def wait_for_copy(cluster: Cluster, database: str, timeout_s: float = 60) -> int:
    """PID of pg_dump's backend once it is copying table data."""
    return wait_for_pg_dump(cluster, database, "query ILIKE 'COPY%%'", "started copying", timeout_s)


def visible_files(root: Path) -> list[str]:
    """Every file under ``root`` except the run history."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "_state" not in p.parts
    )


def processes_running(marker: str) -> list[str]:
    """Command lines of live processes containing ``marker``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def manifests(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.manifest.json"))]
