"""The spool folder of a directory-format backup in TMPDIR, and the ones killed runs left.

A run killed with SIGKILL (the OOM killer, a lost node, ``kill -9``) cannot remove its spool,
and pg_dump, orphaned, may go on filling it with the uncompressed dump. Each spool is named
``pgbackup-dir-<job>-<random>`` (``<job>``: a digest of what the job is, its destinations, its
databases and its server, as its lock is named) and holds ``owner.json`` (the job, the host, the
pid). ``remove_stale``, called by the next run of the same job while it holds the job's lock,
removes the spools of that job whose run is gone: same job, same host, its pid no longer
alive, owned by this user, a real folder (never a symbolic link). Another job's spool, or one
of a live process, is never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import tempfile

from backup.config import Config
from backup.postgres.processes import pid_alive

log = logging.getLogger(__name__)

PREFIX = "pgbackup-dir-"
OWNER_FILE = "owner.json"


def job_tag(config: Config) -> str:
    """What the job is (its destinations, databases and server), as 16 hex digits."""
    pg = config.postgres
    databases = ["*all*"] if pg.all_databases else sorted(pg.databases)
    identity = "|".join((*sorted(config.storage.destinations), "--", *databases, pg.display_host))
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def make_spool(config: Config) -> str:
    """A new spool folder in TMPDIR (mode 0700), marked as this run's."""
    tag = job_tag(config)
    spool = tempfile.mkdtemp(prefix=f"{PREFIX}{tag}-")
    owner = {"job": tag, "host": socket.gethostname(), "pid": os.getpid()}
    with open(os.path.join(spool, OWNER_FILE), "w") as out:
        json.dump(owner, out)
    return spool


def remove_stale(config: Config) -> list[str]:
    """Remove the spools this job's earlier runs left in TMPDIR (see the module's docstring);
    call it only while holding the job's lock. Returns the folders removed."""
    tag = job_tag(config)
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError as err:
        log.warning("cannot look for spools left in %s (TMPDIR): %s", root, err)
        return []
    removed = []
    for name in sorted(names):
        if not name.startswith(f"{PREFIX}{tag}-"):
            continue
        path = os.path.join(root, name)
        if not _left_by_a_dead_run(path, tag):
            continue
        size = _size(path)
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):
            log.warning("could not remove the spool %s an earlier run left", path)
            continue
        removed.append(path)
        log.warning(
            "removed the spool %s (%.1f MB) an earlier run of this job left (it was killed)",
            path,
            size / 1e6,
            extra={"stage": "start"},
        )
    return removed


def _left_by_a_dead_run(path: str, tag: str) -> bool:
    try:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        with open(os.path.join(path, OWNER_FILE)) as source:
            owner = json.load(source)
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if owner.get("job") != tag or owner.get("host") != socket.gethostname():
        return False
    return pid != os.getpid() and not pid_alive(pid)


def _size(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
