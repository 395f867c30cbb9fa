"""``restore``: choose the backup (a name or ``latest``), then restore it with the restore engine
(``backup.restore``): into a fresh database and swap names, or ``--in-place``; or the globals."""

from __future__ import annotations

import argparse

from backup import restore as engine
from backup import storage
from backup.config import Config
from backup.errors import ConfigError
from backup.manifest import catalog
from backup.restore import tables as table_restore

NEEDS_DATABASES = False
DESCRIPTION = (
    "Restore into a fresh database, then swap names: the current database is kept as "
    "<db>_pre_restore_<timestamp> unless --drop-old. Nothing is changed before the new copy "
    "restored fully and its sha256 matched. With --table or --schema, only those tables, into "
    "--target-db (or --in-place into the live database, --clean to replace them), in one "
    "transaction committed after the sha256 matched."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", nargs="?", default="latest", help="backup name from 'list', or latest"
    )
    parser.add_argument(
        "--target-db",
        metavar="DB",
        help="database to restore into (default: the backed-up database's name)",
    )
    parser.add_argument("--force", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="restore into the existing database with --clean --if-exists (for roles "
        "that may not create databases); the object is verified in full first",
    )
    parser.add_argument(
        "--drop-old",
        action="store_true",
        help="drop the previous database after the swap instead of keeping it",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="parallel pg_restore (default 1; BACKUP_JOBS for a directory-format backup, whose "
        "files also download N at a time); a custom-format archive is first downloaded to a "
        "temporary file in TMPDIR (needs that much disk), a directory-format one always is",
    )
    parser.add_argument(
        "--no-database-properties",
        dest="database_properties",
        action="store_false",
        help="do not give the restored database the backup's owner, settings, comment and "
        "grants (they are listed in the log instead)",
    )
    parser.add_argument("--database", help="the database whose backup to restore (for latest)")
    parser.add_argument("--destination", metavar="URL", help="read from this destination first")
    parser.add_argument("--globals", action="store_true", help="restore roles and tablespaces")
    parser.add_argument("--dry-run", action="store_true", help="show what would be done")
    parser.add_argument(
        "--table",
        action="append",
        metavar="SCHEMA.TABLE",
        help="restore only this table, with its data, indexes, constraints, triggers, "
        "policies, defaults, comments, grants and owned sequences (and the schema, types and "
        "functions it uses that the target lacks), into --target-db DB, or with --in-place "
        "into the live database, where it must not exist (unless --clean); one transaction; "
        "repeatable; quote a part "
        'with double quotes ("My Schema"."T.1"); a name without a schema is the one table '
        "of that name in the backup",
    )
    parser.add_argument(
        "--schema",
        action="append",
        metavar="NAME",
        help="restore every table of this schema in the backup, as --table does for each "
        "(exact name; repeatable)",
    )
    parser.add_argument(
        "--list-tables",
        action="store_true",
        help="print the tables the backup holds, as --table takes them, and stop (the "
        "'contents' command says more)",
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="with --in-place and --table/--schema: replace a chosen table that exists "
        "(dropped with what it owns, then restored, in one transaction; refused when a view "
        "or another table's foreign key depends on it)",
    )


def _refuse_blank(value: str | None, what: str, hint: str) -> None:
    """An empty or blank name is a typo (an unset variable in ``--target-db "$DB"``), never
    "the default": refused before anything is read or changed."""
    if value is not None and not value.strip():
        raise ConfigError(f"{what} {value!r}: a name cannot be empty or blank", hint=hint)


def run(config: Config, args: argparse.Namespace) -> int:
    _refuse_blank(
        args.target_db,
        "--target-db",
        "name the database to restore into, or leave --target-db out to restore into the "
        "backed-up database's name",
    )
    _refuse_blank(
        args.database,
        "--database",
        "name the database whose backup to restore, or leave --database out",
    )
    _refuse_blank(args.name, "backup name", "give a name from 'list', or latest")
    _refuse_blank(args.destination, "--destination", "give a destination URL, or leave it out")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("--jobs must be 1 or more")
    if args.in_place and args.drop_old:
        raise ConfigError("--in-place and --drop-old cannot be combined")
    tables, schemas = args.table or [], args.schema or []
    if (tables or schemas or args.list_tables) and args.globals:
        raise ConfigError("--table, --schema and --list-tables cannot be combined with --globals")
    options = engine.RestoreOptions(
        target_db=args.target_db,
        force=args.force,
        in_place=args.in_place,
        drop_old=args.drop_old,
        jobs=args.jobs,
        dry_run=args.dry_run,
        database_properties=args.database_properties,
    )
    if args.clean and not (tables or schemas):
        raise ConfigError(
            "--clean goes with --table or --schema (and --in-place)",
            hint="a whole-database --in-place restore always cleans the database first",
        )
    if tables or schemas:
        table_restore.check_arguments(tables, options, schemas, args.clean)
    storages = storage.open_all(config.storage, first=args.destination)
    entries = catalog.resolve(
        storages, args.name, args.database, config.postgres.database, globals_only=args.globals
    )
    by_url = {s.url: s for s in storages}
    if args.list_tables:
        table_restore.list_tables(config, by_url, entries)
        return 0
    if args.globals:
        engine.restore_globals(config, by_url, entries, args.force, args.dry_run)
        return 0
    if tables or schemas:
        table_restore.restore_tables(
            config, by_url, entries, tables, options, schemas=schemas, clean=args.clean
        )
        return 0
    engine.restore_database(config, by_url, entries, options)
    return 0
