"""The swap at the end of a restore is one transaction: whatever stops it between its two
renames (a failure, a signal, a lost connection), the target keeps its name and its data."""

from __future__ import annotations

import pytest

from backup.config import load
from backup.errors import Interrupted
from backup.postgres import server as pg_server
from backup.restore.steps import RestoreOptions, swap
from tests.conftest import unique_name


def _databases(pg15, prefix: str) -> set[str]:
    with pg15.connect() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return {row[0] for row in rows}


def test_a_kill_between_the_two_renames_leaves_the_names_as_they_were(pg15, monkeypatch):
    target = unique_name("swap")
    fresh = f"{target}_restoring_x"
    with pg15.connect() as conn:
        conn.execute(f'CREATE DATABASE "{target}"')
        conn.execute(f'CREATE DATABASE "{fresh}"')
    real_rename = pg_server.rename_database
    calls = []

    def rename_then_signal(conn, old: str, new: str) -> None:
        calls.append((old, new))
        if len(calls) == 2:  # the first rename went through: the worst moment
            conn.close()  # the job killed there (SIGKILL, OOM, a node lost): no cleanup runs
            raise Interrupted("SIGKILL")
        real_rename(conn, old, new)

    monkeypatch.setattr(pg_server, "rename_database", rename_then_signal)
    config = load(pg15.env("postgres"))
    with pytest.raises(Interrupted):
        swap(config.postgres, "postgres", target, fresh, RestoreOptions(), "x")
    assert calls[0][0] == target
    assert _databases(pg15, target) == {target, fresh}
