"""What a backup holds, without restoring it (``contents``, ``restore --list-tables``): from
its manifest and the archive's own table of contents only.

A directory-format backup downloads ``toc.dat`` alone (checked: its size and sha256); a
custom-format one reads the head of its stream until ``pg_restore --list`` has the table of
contents, and stops the download there (that head is not checked against the object's sha256:
``verify`` reads it all). The row counts are the manifest's (exact, in the dump's snapshot, or
the planner's estimates: said which); the stored size of each table is its data file's, which
only the directory format has.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from backup.config import Config
from backup.dirformat.fetch import fetch_folder
from backup.errors import BackupError, StorageError
from backup.manifest import Manifest
from backup.manifest.catalog import Entry
from backup.postgres import pg_restore_table, toc
from backup.postgres import server as pg_server
from backup.postgres import tools as pg_tools
from backup.storage import Storage
from backup.stream.readback import open_archive

# The kinds of entries listed by name, and the field of ``Contents`` each goes to.
_LISTED = {
    "VIEW": "views",
    "MATERIALIZED VIEW": "materialized_views",
    "FOREIGN TABLE": "foreign_tables",
    "SEQUENCE": "sequences",
    "FUNCTION": "functions",
    "PROCEDURE": "functions",
    "AGGREGATE": "functions",
    "TYPE": "types",
    "DOMAIN": "types",
    "EXTENSION": "extensions",
}
_OID_RANGE = re.compile(r"^- (\d+)\.\.(\d+) ")


@dataclass
class TableContents:
    name: str
    """As ``--table`` takes it (``"Odd Schema"."T x"``)."""
    schema: str
    table: str
    with_data: bool
    """False: the archive creates it without its rows (BACKUP_EXCLUDE_TABLE_DATA, ...)."""
    rows: int | None = None
    """As the manifest recorded them (None: not recorded, or never analysed)."""
    rows_exact: bool = False
    stored_bytes: int | None = None
    """Its data file as stored (compressed, encrypted); the directory format only."""
    plain_bytes: int | None = None


@dataclass
class Contents:
    name: str
    database: str | None
    format: str
    created_at: str
    size_bytes: int
    pg_dump_version: str
    row_counts: str | None
    """``exact``, ``estimate`` or None (none recorded)."""
    schemas: list[str] = field(default_factory=list)
    tables: list[TableContents] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    materialized_views: list[str] = field(default_factory=list)
    foreign_tables: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    large_objects: int = 0
    large_objects_exact: bool = True
    """False when pg_dump 17+ grouped them and only the groups' first and last OIDs show."""
    excluded: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def read_toc(
    config: Config, storage: Storage, m: Manifest, tools: pg_tools.Tools, spool: str
) -> pg_restore_table.ArchiveToc:
    """The archive's table of contents: a stream's first bytes (not yet checked: a restore
    compares them with its own checked read), or a directory backup's toc.dat (checked)."""
    if m.format == "directory":
        folder = os.path.join(spool, "dump")
        os.makedirs(folder, 0o700, exist_ok=True)
        fetch_folder(config.codec, storage, m, folder, 1, only="toc.dat".__eq__)
        return pg_restore_table.folder_toc(tools, folder)
    verifying, archive = open_archive(config.codec, storage, m)
    return pg_restore_table.stream_toc(tools, verifying, archive, verifying.source.close)


def reader_tools(config: Config, m: Manifest) -> pg_tools.Tools:
    """No server here: the pg_restore of the dump's own major reads its archive best."""
    major = pg_tools.major_of(m.pg_dump_version) or 0
    nearest = pg_server.ServerInfo(m.pg_dump_version, major * 10000)
    return pg_tools.choose_restore_tools(nearest, m.pg_dump_version, config.pg_bin_dirs)


def read_contents(config: Config, storages: dict[str, Storage], entries: list[Entry]) -> Contents:
    """What the backup of ``entries`` (one per destination, tried in order when one cannot be
    read) holds."""
    last_error: BackupError | None = None
    for entry in entries:
        m = entry.manifest
        try:
            with tempfile.TemporaryDirectory(prefix="pgbackup-contents-") as spool:
                found = read_toc(
                    config, storages[entry.destination], m, reader_tools(config, m), spool
                )
            return describe(m, found)
        except StorageError as err:
            last_error = err
    assert last_error is not None
    raise last_error


def describe(m: Manifest, found: pg_restore_table.ArchiveToc) -> Contents:
    """``Contents`` from the manifest and the archive's table of contents: pure code."""
    recorded = m.row_counts if isinstance(m.row_counts, dict) else {}
    mode = recorded.get("mode") if recorded.get("tables") is not None else None
    counts = recorded.get("tables") or {}
    data_ids = {d: e.dump_id for e in found.entries if e.kind == "TABLE DATA" for d in e.depends_on}
    files = {f["name"]: f for f in m.files}
    contents = Contents(
        name=m.name,
        database=m.database,
        format=m.format,
        created_at=m.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        size_bytes=m.size_bytes,
        pg_dump_version=m.pg_dump_version,
        row_counts=mode,
        excluded=dict(m.excluded),
    )
    for dump_id, table in sorted(found.tables.items(), key=lambda item: str(item[1])):
        rows = counts.get(pg_server.table_key(table.schema, table.name))
        data = files.get(f"{data_ids[dump_id]}.dat") if dump_id in data_ids else None
        contents.tables.append(
            TableContents(
                name=str(table),
                schema=table.schema,
                table=table.name,
                with_data=dump_id in data_ids,
                # An estimate of -1: the table was never analysed, its size is unknown.
                rows=rows if isinstance(rows, int) and rows >= 0 else None,
                rows_exact=mode == "exact",
                stored_bytes=data["size_bytes"] if data else None,
                plain_bytes=data.get("plain_bytes") if data else None,
            )
        )
    schemas = {t.schema for t in found.tables.values()}
    for entry in found.entries:
        name = found.names.get(entry.dump_id)
        if entry.kind == "SCHEMA":
            schemas.add(name.name if name else entry.names.split(" ")[1])
        elif entry.kind in _LISTED:
            getattr(contents, _LISTED[entry.kind]).append(str(name) if name else _shown(entry))
        elif entry.kind in ("BLOB", "BLOB METADATA"):
            grouped = _OID_RANGE.match(entry.names)
            contents.large_objects += 2 if grouped else 1
            contents.large_objects_exact &= not grouped
    contents.schemas = sorted(schemas)
    for kind in set(_LISTED.values()):
        getattr(contents, kind).sort()
    return contents


def _shown(entry: toc.TocEntry) -> str:
    """``schema.tag`` of an entry whose exact name was not read (the listing's, unquoted)."""
    parts = entry.names.split(" ")
    tag = " ".join(parts[1:-1]) or parts[0]
    return tag if parts[0] == "-" or len(parts) < 3 else f"{parts[0]}.{tag}"
