"""``restore --table``: chosen tables of a backup, with what they own and what they use that
the target lacks, restored in one transaction into ``--target-db`` or, ``--in-place``, the
backed-up database (one of the two is required); and ``restore --list-tables``.

Nothing existing is replaced unless ``--in-place --clean`` says so: a table (or any relation of
its name) already in the target is refused before anything changes (exit 2); the operator
drops or renames it, restores into another database (``--target-db``, created when missing and
dropped again if the restore fails), or replaces it with ``--in-place --clean`` (its entries
dropped and restored in the same transaction; refused when a view or another table's foreign
key depends on it). The restore is one transaction, committed only after the whole stored
object (or, for a directory-format backup, every file read) matched its size and sha256: a
damaged backup (exit 5), a failed statement (exit 3) or an interrupted job leaves the target
as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

from backup.config import Config
from backup.dirformat.fetch import fetch_folder
from backup.errors import BackupError, ConfigError, StorageError
from backup.manifest.catalog import Entry
from backup.postgres import pg_restore_table, pooler, toc, toc_names
from backup.postgres import server as pg_server
from backup.postgres import tools as pg_tools
from backup.restore.contents import read_contents, read_toc
from backup.restore.steps import RestoreOptions, confirm
from backup.restore.table_target import Target as _Target
from backup.restore.table_target import inspect, referenced_tables
from backup.storage import Storage
from backup.stream.readback import open_archive

log = logging.getLogger(__name__)


def list_tables(config: Config, storages: dict[str, Storage], entries: list[Entry]) -> None:
    """Print the tables the backup holds, as ``--table`` takes them, from the archive's own
    table of contents (with the row counts the manifest recorded, when it did)."""
    found = read_contents(config, storages, entries)
    about = "" if found.row_counts == "exact" else "about "
    print(f"{found.name}: {len(found.tables)} tables")
    for table in found.tables:
        if not table.with_data:
            note = "definition only (its rows were not dumped)"
        else:
            note = f"{about}{table.rows} rows" if table.rows is not None else ""
        print(f"  {table.name}" + (f"  {note}" if note else ""))


def check_arguments(
    names: list[str], options: RestoreOptions, schemas: Sequence[str] = (), clean: bool = False
) -> None:
    """Exit 2 for an empty ``--table`` or ``--schema``, a restore with neither ``--target-db``
    nor ``--in-place``, or an option that cannot go with them, before anything is read."""
    for value in names:
        toc.parse_table_argument(value)
    for schema in schemas:
        if not schema.strip():
            raise ConfigError(f"--schema {schema!r}: a schema name cannot be empty or blank")
    for flag, given in (
        ("--drop-old", options.drop_old),
        ("--no-database-properties", not options.database_properties),
    ):
        if given:
            raise ConfigError(
                f"--table and --schema cannot be combined with {flag}",
                hint="--table never swaps or drops a database: it adds tables to one",
            )
    if options.target_db is None and not options.in_place:
        raise ConfigError(
            "--table and --schema need --target-db DB, or --in-place to restore into the "
            "backed-up database itself",
            hint="--target-db NEW restores the tables into a database of their own (created "
            "when missing) to compare and copy rows from; --in-place puts them back into the "
            "live database, where they must not exist (or add --clean to replace them)",
        )
    if clean and not options.in_place:
        raise ConfigError(
            "--clean needs --in-place: only a restore into the live database replaces tables",
            hint="restore into another database with --target-db, or add --in-place",
        )


def restore_tables(
    config: Config,
    storages: dict[str, Storage],
    entries: list[Entry],
    names: list[str],
    options: RestoreOptions,
    confirm_fn: Callable[[list[str], bool], None] = confirm,
    schemas: Sequence[str] = (),
    clean: bool = False,
) -> str:
    """Restore the tables ``names`` (``--table``) and every table of ``schemas`` (``--schema``)
    of the backup in ``entries`` (one per destination, tried in order) into ``--target-db``,
    or with ``--in-place`` into the backed-up database (or ``--target-db``, which must exist),
    confirmed once; ``clean`` (``--in-place --clean``) replaces the chosen tables that exist.
    Returns the database restored into."""
    check_arguments(names, options, schemas, clean)
    pg = config.postgres
    first = entries[0].manifest
    database = options.target_db if options.target_db is not None else first.database
    if not database or not database.strip():
        raise ConfigError(f"--target-db {database!r}: a database name cannot be empty or blank")
    pg_server.check_identifier(database, "--target-db")
    admin_db = pg_server.maintenance_db(pg, database)
    with pg_server.connect(pg, admin_db) as conn:
        # pg_restore's session settings would land on server sessions others share
        pooler.require_sessions(pg, admin_db, conn)
        server = pg_server.server_info(conn)
        exists = pg_server.database_exists(conn, database)
    if options.in_place and not exists:
        raise ConfigError(
            f"--in-place: the database {database} does not exist on this server",
            hint="--in-place restores into a live database; name a new one with --target-db "
            "(without --in-place) to have it created",
        )
    target = _Target(database, admin_db, exists, server, options.in_place, clean)
    tools = pg_tools.choose_restore_tools(server, first.pg_dump_version, config.pg_bin_dirs)
    asked: list[bool] = []

    def confirm_once(lines: list[str], force: bool) -> None:
        # A fallback to the next destination restores the same tables: asked once.
        if not asked:
            confirm_fn(lines, force)
            asked.append(True)

    last_error: BackupError | None = None
    for index, entry in enumerate(entries):
        if index:
            log.warning("falling back to %s after: %s", entry.destination, last_error)
        try:
            _restore_tables_from(
                config,
                storages[entry.destination],
                entry,
                tools,
                target,
                names,
                schemas,
                options,
                confirm_once,
            )
            return database
        except StorageError as err:
            last_error = err
    assert last_error is not None
    raise last_error


def _restore_tables_from(
    config: Config,
    storage: Storage,
    entry: Entry,
    tools: pg_tools.Tools,
    target: _Target,
    names: list[str],
    schemas: Sequence[str],
    options: RestoreOptions,
    confirm_fn: Callable[[list[str], bool], None],
) -> None:
    """The chosen tables of ``entry``'s backup on ``storage``, after the confirmation."""
    m = entry.manifest
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgbackup-restore-") as spool:
        found = read_toc(config, storage, m, tools, spool)
        chosen = toc.resolve(names, found.tables, schemas)
        own = toc.select(found.entries, found.tables, chosen)
        state = inspect(
            config,
            target,
            chosen,
            found.names,
            toc.dependencies(found.entries, own),
            referenced_tables(own, found.tables, chosen),
        )
        selection = toc.select(
            found.entries,
            found.tables,
            chosen,
            create=state.missing,
            missing_tables=state.missing_tables,
        )
        lines = _plan(config, target, entry, chosen, state.replaced, selection, found.names)
        if options.dry_run:
            _print_dry_run(lines, selection)
            return
        confirm_fn(lines, options.force)
        with _dropped_on_failure(config, target):
            _load_tables(
                config,
                storage,
                entry,
                tools,
                target,
                spool,
                found,
                selection,
                options,
                clean=bool(state.replaced),
            )
    log.info(
        "restored %s of %s into %s in %.1f s (sha256 ok)",
        ", ".join(str(t) for t in chosen.values()),
        m.name,
        target.database,
        time.monotonic() - started,
        extra={"stage": "restore", "seconds": round(time.monotonic() - started, 3)},
    )
    _warn_left_out(target, selection)


def _print_dry_run(lines: list[str], selection: toc.Selection) -> None:
    print("\n".join(lines))
    print("Entries of the archive that would be restored:")
    for item in selection.entries:
        if item.kind not in ("ENCODING", "STDSTRINGS", "SEARCHPATH"):
            print(f"  {item.kind} {item.names}")
    print("dry run: nothing was changed")


@contextlib.contextmanager
def _dropped_on_failure(config: Config, target: _Target) -> Iterator[None]:
    """A target database missing is created first, and dropped again if the restore fails; an
    existing one is left as it was (the restore is one transaction)."""
    pg = config.postgres
    if not target.exists:
        with pg_server.connect(pg, target.admin_db) as conn:
            pg_server.create_database(conn, target.database)
    try:
        yield
    except BaseException:
        if not target.exists:
            log.error("restore failed: dropping %s, which it created", target.database)
            with (
                contextlib.suppress(BackupError),
                pg_server.connect(pg, target.admin_db) as conn,
            ):
                pg_server.drop_database(conn, target.database)
        else:
            log.error("restore failed: nothing was committed; %s is unchanged", target.database)
        raise


def _load_tables(
    config: Config,
    storage: Storage,
    entry: Entry,
    tools: pg_tools.Tools,
    target: _Target,
    spool: str,
    found: pg_restore_table.ArchiveToc,
    selection: toc.Selection,
    options: RestoreOptions,
    clean: bool,
) -> None:
    """pg_restore of the selection: from the chosen files of a directory backup, fetched into
    the spool, or from the stored object streamed and checked."""
    pg, m = config.postgres, entry.manifest
    if m.format == "directory":
        folder = os.path.join(spool, "dump")
        wanted = {f"{e.dump_id}.dat" for e in selection.entries if e.kind == "TABLE DATA"}
        fetch_folder(
            config.codec,
            storage,
            m,
            folder,
            options.jobs or config.dump.jobs,
            progress_s=config.log.progress_interval_s,
            purpose="restore",
            only=wanted.__contains__,
        )
        pg_restore_table.restore_folder_tables(
            tools, pg, target.database, folder, selection, clean=clean
        )
        return
    verifying, archive = open_archive(
        config.codec, storage, m, config.log.progress_interval_s, "restore"
    )
    pg_restore_table.restore_stream(
        tools, pg, target.database, archive, verifying, found, selection, clean=clean
    )


def _warn_left_out(target: _Target, selection: toc.Selection) -> None:
    """What the selection names but could not restore (entries of other objects)."""
    if selection.left_out:
        log.warning(
            "not restored, they belong to other objects: %s",
            "; ".join(f"{e.kind} {e.names}" for e in selection.left_out),
        )
    if selection.dangling:
        log.warning(
            "not restored, the tables they point to are neither chosen nor in %s: %s",
            target.database,
            "; ".join(f"{e.kind} {e.names}" for e in selection.dangling),
        )


def _plan(
    config: Config,
    target: _Target,
    entry: Entry,
    chosen: dict[int, toc.TableName],
    replaced: list[toc.TableName],
    selection: toc.Selection,
    names: dict[int, toc_names.ObjectName],
) -> list[str]:
    m = entry.manifest
    if replaced:
        state = "exists: the tables below are REPLACED, nothing else is"
    elif target.exists:
        state = "exists: the tables are added, nothing is replaced"
    else:
        state = "new"
    replacing = {str(t) for t in replaced}
    created = [str(t) for t in chosen.values() if str(t) not in replacing]
    lines = [
        "⚠️  WARNING: TABLE RESTORE",
        f"Server:   {config.postgres.display_host} (PostgreSQL {target.server.version})",
        f"Database: {target.database} ({state})",
        f"Backup:   {m.name} ({m.size_bytes / 1e6:.2f} MB, "
        f"{m.created_at:%Y-%m-%d %H:%M:%S} UTC) from {entry.destination}",
        f"Tables:   {', '.join(str(t) for t in chosen.values())} (with their data, indexes, "
        "constraints, triggers, policies, defaults, comments, grants and owned sequences)",
    ]
    if created:
        lines.append(f"Created:  {', '.join(created)}")
    if replaced:
        lines.append(
            f"Replaced: {', '.join(str(t) for t in replaced)} (dropped with its indexes, "
            "constraints, triggers, policies, defaults and owned sequences, then restored; "
            "its current rows are lost)"
        )
    if selection.created:
        lines.append(
            "Also created (used by the tables, missing in the target): "
            + ", ".join(f"{e.kind} {names.get(e.dump_id, e.names)}" for e in selection.created)
        )
    lines.append(
        "Mode:     one transaction, committed only after the whole backup read matched its sha256"
    )
    with_data = {d for e in selection.entries if e.kind == "TABLE DATA" for d in e.depends_on}
    empty = [str(t) for i, t in chosen.items() if i not in with_data]
    if empty:
        lines.append(
            f"Rows:     none in this backup for {', '.join(empty)} (left out of the dump, "
            "BACKUP_EXCLUDE_TABLE_DATA or BACKUP_PG_DUMP_ARGS): restored empty"
        )
    if selection.left_out:
        lines.append(
            "Not restored (they belong to other objects): "
            + "; ".join(f"{e.kind} {e.names}" for e in selection.left_out)
        )
    if selection.dangling:
        lines.append(
            "Not restored (the tables they point to are neither chosen nor in the target): "
            + "; ".join(f"{e.kind} {e.names}" for e in selection.dangling)
        )
    return lines
