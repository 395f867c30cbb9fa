"""The custom format's stream (and the globals'): pg_dump -Fc (or pg_dumpall) through the codec
to one object per destination, the archive's first bytes kept to read what it holds; then its
manifest on each destination that holds every byte (``commit.py``)."""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
from typing import Any

from backup.config import Config
from backup.dump.commit import Pending, base_manifest, commit
from backup.dump.start import Dump
from backup.errors import BackupError
from backup.job.outcome import DatabaseResult
from backup.postgres import contents
from backup.postgres.inspection import Server
from backup.postgres.pg_restore import HEAD_LIMIT_BYTES
from backup.storage import Storage
from backup.stream.pipeline import StreamResult, stream_dump
from backup.stream.progress import Progress

log = logging.getLogger(__name__)


def stream(
    config: Config,
    server: Server,
    storages: list[Storage],
    dump: Dump,
    stack: contextlib.ExitStack,
) -> tuple[StreamResult, tuple[dict[str, Any], dict[str, Any]]]:
    """The dump streamed to every destination; what the archive holds (row counts, what was
    excluded), read from its own table of contents while the snapshot is still open."""
    database = dump.database
    # The archive's first bytes, its table of contents: what the dump really holds.
    head = (
        stack.enter_context(tempfile.TemporaryFile(prefix="pgbackup-toc-"))  # noqa: SIM115
        if database is not None
        else None
    )
    result = stream_dump(
        dump.argv,
        dump.env,
        "pg_dumpall" if database is None else "pg_dump",
        config.codec,
        [(s, dump.key) for s in storages],
        Progress(f"backup {dump.name}", config.log.progress_interval_s),
        head=head,
        head_limit_bytes=HEAD_LIMIT_BYTES,
    )
    counts: dict[str, Any] = {}
    excluded: dict[str, Any] = {}
    if database is not None and head is not None:
        held = contents.read_contents(server.tools, head, dump.label)
        counts, excluded = contents.describe(
            config, database, dump.catalog, dump.snapshot_conn, held
        )
        contents.log_excluded(dump.label, excluded)
    return result, (counts, excluded)


def commit_stream(
    config: Config,
    server: Server,
    storages: list[Storage],
    dump: Dump,
    result: StreamResult,
    described: tuple[dict[str, Any], dict[str, Any]],
) -> DatabaseResult:
    """The manifest on each destination whose upload succeeded; where it cannot be written,
    the object goes too."""
    _log_ratio(config, dump.label, result)
    facts = dump.facts(config, server, result.seconds, described)
    record = base_manifest(
        config,
        facts,
        object_key=dump.key,
        size_bytes=result.stored_bytes,
        raw_size_bytes=result.raw_bytes,
        sha256=result.sha256,
    )
    pending = [
        Pending(
            storage,
            record,
            None if upload.ok else _describe(upload.error),
            functools.partial(_delete_quietly, storage, dump.key),
            stored=dump.key,
            stored_bytes=upload.size,
            hint=upload.error.hint if isinstance(upload.error, BackupError) else None,
        )
        for storage, upload in zip(storages, result.uploads, strict=True)
    ]
    return commit(pending, facts, result.raw_bytes, size_bytes=result.stored_bytes)


def _log_ratio(config: Config, label: str, result: StreamResult) -> None:
    ratio = 100.0 * (1 - result.stored_bytes / result.raw_bytes) if result.raw_bytes else 0.0
    log.info(
        "dump of %s done: %.2f MB, stored %.2f MB %s (%.1f%% reduction) in %.1f s",
        label,
        result.raw_bytes / 1e6,
        result.stored_bytes / 1e6,
        config.codec.compression + (" + age" if config.codec.encrypted else ""),
        ratio,
        result.seconds,
        extra={
            "stage": "dump",
            "database": label,
            "raw_bytes": result.raw_bytes,
            "stored_bytes": result.stored_bytes,
            "seconds": round(result.seconds, 3),
        },
    )


def _delete_quietly(storage: Storage, key: str) -> None:
    """The object whose manifest could not be written: nothing may look like a backup."""
    with contextlib.suppress(BackupError):
        storage.delete([key])


def _describe(error: BaseException | None) -> str:
    if isinstance(error, BackupError):
        return error.message
    return str(error) or type(error).__name__
