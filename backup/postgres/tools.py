"""The PostgreSQL client tools: which installation to use, and every command line they run.

pg_dump / pg_restore / psql are chosen to match the server's major version when several are
installed (``BACKUP_PG_BIN_DIRS``, then ``/usr/lib/postgresql/<major>/bin``, then ``PATH``);
otherwise the newest. A pg_dump older than the server is refused: that is the usual way backups
silently stop after a server upgrade.

Every argv of a client tool is built here (``pg_dump_argv``, ``pg_dumpall_argv``,
``pg_restore_argv``, ``pg_restore_list_argv``, ``pg_restore_database_toc_argv``,
``pg_restore_database_script_argv``, ``psql_script_argv``). None carries a password:
children get it in their environment (``PostgresConfig.libpq_env``), never in argv.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backup.errors import DatabaseError
from backup.postgres.processes import child_env

if TYPE_CHECKING:  # not psycopg for --version, nor for the verbs that read archives alone
    from backup.postgres.server import ServerInfo

SYSTEM_BIN_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True)
class Tools:
    """One installation of the client tools, all of the same major version."""

    bindir: Path
    major: int
    version: str  # e.g. "15.18"

    def path(self, tool: str) -> str:
        return str(self.bindir / tool)


def _tool_version(pg_dump: Path) -> tuple[int, str] | None:
    try:
        out = subprocess.run(
            [str(pg_dump), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            env=child_env(),  # it does not connect: no libpq variable, no secret
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        return None
    return int(match[1]), match[0]


def installed_tools(extra_dirs: Sequence[str] = ()) -> list[Tools]:
    """Every client installation found, newest major first (one per major)."""
    candidates = [Path(d) for d in extra_dirs]
    candidates += [Path(d) for d in sorted(glob.glob(SYSTEM_BIN_GLOB))]
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    found: dict[int, Tools] = {}
    for bindir in candidates:
        pg_dump = bindir / "pg_dump"
        if not pg_dump.exists():
            continue
        version = _tool_version(pg_dump)
        if version and version[0] not in found:
            found[version[0]] = Tools(bindir=bindir, major=version[0], version=version[1])
    return sorted(found.values(), key=lambda t: t.major, reverse=True)


def choose_tools(server: ServerInfo, extra_dirs: Sequence[str] = ()) -> Tools:
    """The tools of the server's major if installed, else the newest; refuse older ones."""
    tools = installed_tools(extra_dirs)
    if not tools:
        raise DatabaseError(
            "pg_dump is not installed",
            hint="install the PostgreSQL client tools (the container image ships 14 to 18)",
        )
    for candidate in tools:
        if candidate.major == server.major:
            return candidate
    newest = tools[0]
    if newest.major < server.major:
        raise DatabaseError(
            f"pg_dump {newest.version} is older than the server ({server.version}): "
            "it cannot dump it",
            hint=f"install the PostgreSQL {server.major} client tools "
            f"(postgresql-client-{server.major}) or use an image that has them; "
            f"found pg_dump {', '.join(t.version for t in tools)}",
        )
    return newest


def choose_restore_tools(
    server: ServerInfo, dump_version: str, extra_dirs: Sequence[str] = ()
) -> Tools:
    """pg_restore able to read an archive made by pg_dump ``dump_version``: the server's major
    when that is new enough, else the oldest major that is (closest to the server's SQL)."""
    tools = installed_tools(extra_dirs)
    if not tools:
        raise DatabaseError(
            "pg_restore is not installed", hint="install the PostgreSQL client tools"
        )
    dump_major = major_of(dump_version) or 0
    able = [t for t in tools if t.major >= dump_major]
    if not able:
        raise DatabaseError(
            f"this backup was made by pg_dump {dump_version}; the newest pg_restore here is "
            f"{tools[0].version} and cannot read it",
            hint=f"install the PostgreSQL {dump_major} client tools "
            f"(postgresql-client-{dump_major})",
        )
    for candidate in able:
        if candidate.major == server.major:
            return candidate
    return min(able, key=lambda t: t.major)


def major_of(version: str) -> int | None:
    """12 of '12.4', 17 of '17.10 (Debian ...)'; None when unreadable."""
    match = re.match(r"(\d+)", version or "")
    return int(match[1]) if match else None


def reader_tools(dump_version: str, extra_dirs: Sequence[str] = ()) -> Tools:
    """pg_restore for reading an archive without a server: the newest installed, which must
    be at least as new as the pg_dump that made it."""
    tools = installed_tools(extra_dirs)
    newest = tools[0] if tools else None
    dump_major = major_of(dump_version) or 0
    if newest is None or newest.major < dump_major:
        raise DatabaseError(
            f"this backup was made by pg_dump {dump_version}; no pg_restore here can read it",
            hint=f"install the PostgreSQL {dump_major} client tools",
        )
    return newest


# ----------------------------------------------------------------------------- command lines


def pg_dump_argv(
    tools: Tools,
    snapshot: str | None = None,
    lock_wait_timeout_s: float | None = None,
    extra_args: Sequence[str] = (),
    directory: str | None = None,
    jobs: int = 1,
) -> list[str]:
    """One database in the custom format, uncompressed (the job compresses), to stdout; with
    ``directory``, in the directory format into that (new) directory, ``jobs`` workers, each
    table's data an uncompressed ``NNNN.dat`` file.

    With ``lock_wait_timeout_s``, pg_dump gives up (and fails) when a table's lock is not
    granted in that time, instead of waiting behind an ``ACCESS EXCLUSIVE`` lock forever.
    ``extra_args`` (BACKUP_PG_DUMP_ARGS, BACKUP_EXCLUDE_TABLE_DATA; checked by the
    configuration) come first, so the job's own options would win a repeated one.
    """
    if directory is None:
        argv = [tools.path("pg_dump"), *extra_args, "-Fc", "-Z0", "--no-password"]
    else:
        # --no-sync: the job takes each file away as soon as it is closed; pg_dump's final
        # fsync of every file of the folder would find them gone (an error, though exit 0).
        argv = [tools.path("pg_dump"), *extra_args, "-Fd", "-Z0", f"--jobs={jobs}", "--no-sync"]
        argv += ["--no-password", f"--file={directory}"]
    if lock_wait_timeout_s:
        argv.append(f"--lock-wait-timeout={max(1, round(lock_wait_timeout_s * 1000))}")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return argv


def pg_dumpall_argv(tools: Tools, role_passwords: bool = True) -> list[str]:
    """Roles and tablespaces as SQL; without ``role_passwords`` (not a superuser), no passwords."""
    argv = [tools.path("pg_dumpall"), "--globals-only", "--no-password"]
    if not role_passwords:
        argv.append("--no-role-passwords")
    return argv


def conninfo_dbname(database: str) -> str:
    """``--dbname`` for a database name: as a conninfo string, so a name containing ``=`` or
    spaces is never parsed as connection options."""
    escaped = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def pg_restore_argv(
    tools: Tools,
    database: str,
    *,
    clean: bool = False,
    archive_path: str | None = None,
    jobs: int = 1,
    extra_args: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> list[str]:
    """pg_restore into ``database``: from stdin, or from ``archive_path`` with ``jobs`` workers;
    only the given ``sections`` (pre-data, data, post-data) if any.

    ``clean`` (``--in-place``) drops each object before recreating it; otherwise the restore
    stops at the first failing statement (``--exit-on-error``)."""
    argv = [tools.path("pg_restore"), "--no-password", *extra_args]
    argv += ["--clean", "--if-exists"] if clean else ["--exit-on-error"]
    argv += [f"--section={section}" for section in sections]
    if archive_path is not None:
        argv += [f"--jobs={jobs}", archive_path]
    return [*argv, "--dbname", conninfo_dbname(database)]


def pg_restore_list_argv(tools: Tools, archive_path: str | None = None) -> list[str]:
    """The table of contents of the archive on stdin, or at ``archive_path`` (needs no
    server)."""
    return [tools.path("pg_restore"), "--list", *([archive_path] if archive_path else [])]


def pg_restore_database_toc_argv(tools: Tools, archive_path: str | None = None) -> list[str]:
    """The table of contents of the archive on stdin (or at ``archive_path``), the database's
    own entries included."""
    return [
        tools.path("pg_restore"),
        "--create",
        "--list",
        *([archive_path] if archive_path else []),
    ]


def pg_restore_database_script_argv(
    tools: Tools, list_path: str, archive_path: str | None = None
) -> list[str]:
    """The SQL of the entries listed in ``list_path`` (the database's own properties), from the
    archive on stdin (or at ``archive_path``), to stdout (needs no server)."""
    argv = [tools.path("pg_restore"), "--create", "--use-list", list_path, "--file", "-"]
    return [*argv, *([archive_path] if archive_path else [])]


def psql_script_argv(tools: Tools, database: str) -> list[str]:
    """psql replaying the SQL script on stdin into ``database``, going on past errors."""
    return [
        tools.path("psql"),
        "--no-password",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=0",
        "--dbname",
        conninfo_dbname(database),
    ]
