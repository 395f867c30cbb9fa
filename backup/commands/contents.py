"""``contents``: what a backup holds, without restoring it (``backup.restore.contents``): its
schemas, tables with their row counts and stored sizes, views, functions, large objects and
what was excluded; as text or ``--json``."""

from __future__ import annotations

import argparse
import json

from backup import storage
from backup.config import Config
from backup.manifest import catalog
from backup.restore.contents import Contents, TableContents, read_contents

NEEDS_DATABASES = False
DESCRIPTION = (
    "Show what a backup holds without restoring it, from its manifest and the archive's own "
    "table of contents (a directory-format backup downloads toc.dat alone; a custom-format "
    "one reads the head of its object only): schemas, tables with the row counts the "
    "manifest recorded (exact or estimates, said which) and, for the directory format, the "
    "size each table's data is stored in; views, sequences, functions, types, large "
    "objects, and what the dump excluded. --json prints one object."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", nargs="?", default="latest", help="backup name from 'list', or latest"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument("--database", help="the database whose backup to show (for latest)")
    parser.add_argument("--destination", metavar="URL", help="read from this destination first")


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage, first=args.destination)
    entries = catalog.resolve(storages, args.name, args.database, config.postgres.database)
    found = read_contents(config, {s.url: s for s in storages}, entries)
    if args.json:
        print(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(format_contents(found)))
    return 0


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _rows(table: TableContents) -> str:
    if not table.with_data:
        return "definition only (its rows were not dumped)"
    if table.rows is None:
        return "rows not recorded"
    return f"{'' if table.rows_exact else 'about '}{table.rows} rows"


def format_contents(found: Contents) -> list[str]:
    """The text ``contents`` prints."""
    counted = {
        "exact": "exact row counts, in the dump's snapshot",
        "estimate": "row counts are the planner's estimates",
    }.get(found.row_counts or "", "no row counts recorded (BACKUP_ROW_COUNTS=off)")
    lines = [
        f"{found.name}: {found.format} format, {_size(found.size_bytes)} stored, "
        f"{found.created_at}, pg_dump {found.pg_dump_version}",
        f"Schemas ({len(found.schemas)}): {', '.join(found.schemas)}",
        f"Tables ({len(found.tables)}; {counted}):",
    ]
    width = max((len(t.name) for t in found.tables), default=0)
    for table in found.tables:
        stored = f"  {_size(table.stored_bytes)} stored" if table.stored_bytes is not None else ""
        lines.append(f"  {table.name.ljust(width)}  {_rows(table)}{stored}")
    for title, names in (
        ("Views", found.views),
        ("Materialized views", found.materialized_views),
        ("Foreign tables", found.foreign_tables),
        ("Sequences", found.sequences),
        ("Functions", found.functions),
        ("Types", found.types),
        ("Extensions", found.extensions),
    ):
        if names:
            lines.append(f"{title} ({len(names)}): {', '.join(names)}")
    if found.large_objects:
        about = "" if found.large_objects_exact else "at least "
        lines.append(f"Large objects: {about}{found.large_objects}")
    excluded = found.excluded
    for key, what in (
        ("table_data_patterns", "Rows excluded by pattern (BACKUP_EXCLUDE_TABLE_DATA)"),
        ("table_data", "Tables whose rows were not dumped"),
        ("tables", "Tables of the server not in the backup"),
    ):
        names = excluded.get(key)
        if isinstance(names, list) and names:
            lines.append(f"{what}: {', '.join(str(n) for n in names)}")
    if not any(excluded.get(k) for k in ("table_data_patterns", "table_data", "tables")):
        lines.append("Excluded: nothing")
    return lines
