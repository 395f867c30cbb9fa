"""The commit, one path for both formats: the manifest of a backup written last on each
destination that holds every byte (the commit marker), the run's facts recorded the same way
whatever the format, and the database's result worked out from what each destination did.

A destination whose upload failed gets no manifest; one whose manifest could not be written
loses what this run stored there (``Pending.undo``: the custom format's object, the directory
format's new content objects), so nothing that looks like a backup is left half-made."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backup import __version__, manifest
from backup.config import Config
from backup.errors import BackupError, StorageError
from backup.job.outcome import DatabaseResult, DestinationResult
from backup.manifest import Manifest
from backup.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Facts:
    """What every manifest of one backup records, whatever its format: the name, when, the
    tools' versions, how it was encoded, and what the archive holds."""

    name: str
    database: str | None  # None: the globals
    started_at: datetime
    finished_at: datetime
    seconds: float  # the dump's own time (pg_dump to the last byte stored)
    encryption: dict[str, Any] | None
    versions: tuple[str, str]  # pg_dump's, the server's
    described: tuple[dict[str, Any], dict[str, Any]]  # row counts, what was excluded
    source: dict[str, Any]  # where the dump was taken (a standby's replay state)


def base_manifest(config: Config, facts: Facts, **format_fields: Any) -> Manifest:
    """The manifest of ``facts``; ``format_fields`` are the format's own (object key, sizes,
    sha256, or a directory backup's files)."""
    database = facts.database
    fields: dict[str, Any] = {
        "object_key": "",
        "size_bytes": 0,
        "sha256": "",
    }
    fields.update(format_fields)
    return Manifest(
        name=facts.name,
        kind="database" if database is not None else "globals",
        database=database,
        created_at=facts.started_at,
        finished_at=facts.finished_at,
        compression=config.codec.compression,
        encryption=facts.encryption,
        pg_dump_version=facts.versions[0],
        server_version=facts.versions[1],
        duration_s=round(facts.seconds, 3),
        job_version=__version__,
        row_counts=facts.described[0],
        pg_dump_args=list(config.dump.pg_dump_args) if database is not None else [],
        excluded=facts.described[1],
        source=facts.source if database is not None else {},
        **fields,
    )


@dataclass(frozen=True)
class Pending:
    """One destination's part of the commit: the manifest to write there, or why it gets none
    (``error``), and how to take back what this run stored there if the manifest cannot be
    written (``undo``)."""

    storage: Storage
    record: Manifest | None
    error: str | None
    undo: Callable[[], None]
    stored: str  # what the log line of a commit says was stored
    stored_bytes: int = 0  # for that log line's extra field
    hint: str | None = None  # the upload's own hint, when it failed
    # what the format does once the manifest is written (the directory format: the damage
    # records of the objects this run stored anew are removed)
    after: Callable[[], None] | None = None


def commit(
    pending: list[Pending], facts: Facts, raw_bytes: int, size_bytes: int | None = None
) -> DatabaseResult:
    """Write each destination's manifest, last; the database's result. ``size_bytes``: the
    backup's stored size (None: the size the first committed manifest records)."""
    label = facts.database if facts.database is not None else "globals"
    outcomes = []
    committed_size = 0
    for part in pending:
        url = part.storage.url
        error = part.error
        if error is None and part.record is not None:
            try:
                manifest.write(part.storage, part.record)
            except BackupError as err:
                error = f"manifest not written: {err.message}"
                part.undo()
            else:
                committed_size = committed_size or part.record.size_bytes
                if part.after is not None:
                    part.after()
                log.info(
                    "backup %s committed to %s: %s",
                    facts.name,
                    url,
                    part.stored,
                    extra={"stage": "upload", "destination": url, "bytes": part.stored_bytes},
                )
        if error is not None:
            log.error("backup %s not stored on %s: %s", facts.name, url, error)
        outcomes.append(DestinationResult(url, error is None, error))
    failed = [o for o in outcomes if not o.ok]
    status = "success" if not failed else "partial" if len(failed) < len(outcomes) else "failure"
    hints = [p.hint for p in pending if p.hint]
    return DatabaseResult(
        database=label,
        status=status,
        name=facts.name,
        size_bytes=committed_size if size_bytes is None else size_bytes,
        raw_bytes=raw_bytes,
        duration_s=(facts.finished_at - facts.started_at).total_seconds() or facts.seconds,
        destinations=tuple(outcomes),
        error="; ".join(_with_url(o.url, o.error) for o in failed) or None,
        hint=(hints[0] if hints else StorageError.default_hint) if failed else None,
        failure=StorageError if failed else None,
    )


def _with_url(url: str, error: str | None) -> str:
    """``url: error``, unless the backend's message already names the destination."""
    text = error or "failed"
    return text if text.startswith(url) else f"{url}: {text}"
