"""Issue 19 items 4 and 5, their pure parts: what a damaged file of a directory archive is
named after, and which spools in TMPDIR a job may remove (never a link, never a live one)."""

from __future__ import annotations

import json
import os
import socket
import tempfile

from backup.config import load
from backup.dirformat import spool
from backup.dirformat.damage import what_file_holds

LISTING = """;
; Archive created at 2026-12-07 20:00:00 UTC
3574; 0 16501 TABLE DATA shop orders_2024 postgres
3575; 0 16510 TABLE DATA "Odd Schema" "Mixed Case Table" app_owner
"""


def test_a_file_is_named_after_what_it_holds() -> None:
    assert what_file_holds(LISTING, "3574.dat") == "TABLE DATA shop orders_2024"
    assert what_file_holds(LISTING, "3575.dat").startswith('TABLE DATA "Odd Schema"')
    assert what_file_holds(LISTING, "toc.dat") == "the archive's table of contents"
    assert what_file_holds(LISTING, "blob_16400.dat") == "large object 16400"
    assert what_file_holds(LISTING, "blobs.toc") == "the list of large objects"
    assert "does not name" in what_file_holds(LISTING, "9999.dat")


def _config(tmp_path):
    return load(
        {
            "PGHOST": "db",
            "PGDATABASE": "shop",
            "BACKUP_DESTINATIONS": f"file://{tmp_path}/b",
        }
    )


def test_only_a_dead_runs_own_spool_is_removed(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = _config(tmp_path)
    tag = spool.job_tag(config)
    host = socket.gethostname()

    def made(name: str, **owner) -> str:
        path = tmp_path / f"pgbackup-dir-{name}"
        path.mkdir()
        (path / "owner.json").write_text(json.dumps({"job": tag, "host": host, **owner}))
        return str(path)

    dead = made(f"{tag}-dead", pid=2**22 + 12345)  # above pid_max's default: never alive
    alive = made(f"{tag}-alive", pid=os.getppid())
    elsewhere = made(f"{tag}-elsewhere", pid=2**22 + 1, host="another-host")
    other_job = made("0000000000000000-x", pid=2**22 + 2)
    target = tmp_path / "precious"
    target.mkdir()
    (target / "owner.json").write_text(json.dumps({"job": tag, "host": host, "pid": 2**22 + 3}))
    os.symlink(target, tmp_path / f"pgbackup-dir-{tag}-link")
    unmarked = tmp_path / f"pgbackup-dir-{tag}-unmarked"
    unmarked.mkdir()

    assert spool.remove_stale(config) == [dead]
    for kept in (alive, elsewhere, other_job, target, unmarked):
        assert os.path.isdir(kept), kept

    mine = spool.make_spool(config)
    assert os.path.basename(mine).startswith(f"pgbackup-dir-{tag}-")
    assert spool.remove_stale(config) == []  # this run's own
    assert os.stat(mine).st_mode & 0o777 == 0o700
