"""The commit of a directory-format backup: one manifest per destination that holds every
file (its own list: what it reused, what it got), written last; a destination that failed, or
whose manifest could not be written, gets none and loses this run's new objects there."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from backup import __version__, manifest
from backup.config import Config
from backup.dirformat import damage
from backup.dirformat.store import DirectoryResult, directory_manifest, remove_uploaded
from backup.errors import BackupError, StorageError
from backup.manifest import Manifest
from backup.outcome import DatabaseResult, DestinationResult

log = logging.getLogger(__name__)


def commit(
    result: DirectoryResult,
    config: Config,
    *,
    name: str,
    database: str,
    started_at: datetime,
    encryption: dict[str, Any] | None,
    versions: tuple[str, str],
    described: tuple[dict[str, Any], dict[str, Any]],
    source: dict[str, Any] | None = None,
) -> DatabaseResult:
    """``versions``: pg_dump's and the server's; ``described``: the row counts and what was
    excluded (``postgres/contents.describe``)."""
    base = Manifest(
        name=name,
        kind="database",
        database=database,
        created_at=started_at,
        finished_at=datetime.now(UTC).replace(microsecond=0),
        object_key="",
        size_bytes=0,
        sha256="",
        compression=config.codec.compression,
        encryption=encryption,
        pg_dump_version=versions[0],
        server_version=versions[1],
        duration_s=round(result.seconds, 3),
        job_version=__version__,
        row_counts=described[0],
        pg_dump_args=list(config.dump.pg_dump_args),
        excluded=described[1],
        source=source or {},
    )
    log.info(
        "directory dump of %s done: %.2f MB in files, %.2f MB new stored, %.1f s",
        base.database,
        result.raw_bytes / 1e6,
        result.new_bytes / 1e6,
        result.seconds,
        extra={"stage": "dump", "database": base.database, "raw_bytes": result.raw_bytes},
    )
    outcomes = []
    size = 0
    for target in result.targets:
        url = target.storage.url
        error = target.error.message if target.error is not None else None
        if error is None:
            record = directory_manifest(base, target)
            try:
                manifest.write(target.storage, record)
            except BackupError as err:
                error = f"manifest not written: {err.message}"
                remove_uploaded(target)
            else:
                size = size or record.size_bytes
                healed = [
                    target.damaged[f["key"]]
                    for f in record.files
                    if f["new"] and f["key"] in target.damaged
                ]
                damage.clear(target.storage, healed + target.stale_records)
                log.info(
                    "backup %s committed to %s: %d files, %d bytes, %d of them new",
                    name,
                    url,
                    len(record.files),
                    record.size_bytes,
                    record.new_bytes,
                    extra={"stage": "upload", "destination": url, "bytes": record.new_bytes},
                )
        if error is not None:
            log.error("backup %s not stored on %s: %s", name, url, error)
        outcomes.append(DestinationResult(url, error is None, error))
    failed = [o for o in outcomes if not o.ok]
    status = "success" if not failed else "partial" if len(failed) < len(outcomes) else "failure"
    return DatabaseResult(
        database=base.database or "",
        status=status,
        name=name,
        size_bytes=size,
        raw_bytes=result.raw_bytes,
        duration_s=(base.finished_at - base.created_at).total_seconds() or result.seconds,
        destinations=tuple(outcomes),
        error="; ".join(
            o.error if (o.error or "").startswith(o.url) else f"{o.url}: {o.error}" for o in failed
        )
        or None,
        hint=StorageError.default_hint if failed else None,
        exit_code=StorageError.exit_code if failed else 0,
    )
