"""pg_restore of a directory-format archive already on disk (``pg_dump -Fd``): its table of
contents, the database's own properties, and the restore with ``jobs`` workers.

The folder was written by ``backup.dirformat`` (each file downloaded, its size and sha256
checked, decrypted and decompressed); this module only runs pg_restore on it and checks its
exit status, as ``pg_restore.py`` does for a stream.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence

from backup.config import PostgresConfig
from backup.postgres import properties
from backup.postgres.pg_restore import ArchiveTables, check_exit, run_reader_tool, toc_tables
from backup.postgres.processes import ChildGroup
from backup.postgres.tools import (
    Tools,
    pg_restore_argv,
    pg_restore_database_script_argv,
    pg_restore_database_toc_argv,
    pg_restore_list_argv,
)


def list_folder(tools: Tools, folder: str) -> str:
    """``pg_restore --list`` of the directory archive in ``folder`` (only its toc.dat is read)."""
    return run_reader_tool(pg_restore_list_argv(tools, folder), "the table of contents")


def folder_tables(tools: Tools, folder: str) -> ArchiveTables:
    """The tables the directory archive in ``folder`` creates and holds rows of, by OID."""
    return toc_tables(list_folder(tools, folder))


def folder_properties(tools: Tools, folder: str) -> properties.DatabaseProperties:
    """The database's own properties (owner, settings, comment, grants) in the archive."""
    toc = run_reader_tool(pg_restore_database_toc_argv(tools, folder), "the database's properties")
    lines = properties.database_toc_lines(toc)
    if not lines:
        return properties.DatabaseProperties()
    with tempfile.NamedTemporaryFile("w", prefix="pgbackup-dbprops-", suffix=".list") as listing:
        listing.write("\n".join(lines) + "\n")
        listing.flush()
        script = run_reader_tool(
            pg_restore_database_script_argv(tools, listing.name, folder),
            "the database's properties",
        )
    return properties.parse_script(script)


def restore_folder(
    tools: Tools,
    pg: PostgresConfig,
    database: str,
    folder: str,
    extra_args: Sequence[str],
    jobs: int,
    clean: bool = False,
) -> None:
    """``pg_restore -j jobs`` of the directory archive in ``folder`` into ``database``; stops at
    the first error (with ``clean``, errors of the DROP phase are tolerated, as for a stream)."""
    argv = pg_restore_argv(
        tools, database, clean=clean, archive_path=folder, jobs=jobs, extra_args=extra_args
    )
    with ChildGroup() as children:
        restorer = children.start(
            argv,
            pg.libpq_env(database),
            "pg_restore",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        check_exit(restorer, restorer.wait(), clean)
