"""The upload side of a directory-format backup: pg_dump -Fd into a spool folder, each file
stored under its content address as soon as it is complete, then removed from the spool.

``dump_directory`` returns only when pg_dump exited 0 and every file reached each destination
still in the run (or was already there); the caller writes the manifests, the commit. What
"already there" means, and the re-check of every object just before returning, are
``reuse.py``'s: nothing is reused on faith.

A failed run removes the spool and the objects it uploaded that no manifest names.

Memory: per file in flight (``jobs``), a read buffer; one large file encoded at a time
(``ENCODES_AT_ONCE``, ``dirformat/encoded.py``: zstd's context, compressing in that thread)
and one upload at a time (``UPLOADS_AT_ONCE``), which holds the storage's parts in flight; the
small file being packed per thread (``packs.py``).
Spool: with inotify, the files in flight (about ``jobs`` tables at once, uncompressed) and
their encoded copies; without, the whole dump.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from backup import manifest
from backup.config import Config
from backup.dirformat import damage
from backup.dirformat.address import ADDRESS_HASH, encoding_tag, file_addresses
from backup.dirformat.encoded import encode_file, put_file, remove
from backup.dirformat.spool import make_spool
from backup.dump.commit import Pending
from backup.dump.packs import Packer, packable
from backup.dump.reuse import Stored, Target, prepare, recheck, still_whole
from backup.dump.watch import FileWatch
from backup.errors import BackupError, ConfigError, Interrupted, StorageError
from backup.manifest import Manifest
from backup.postgres.processes import ChildGroup
from backup.storage import Storage
from backup.stream.codec import object_suffix
from backup.stream.progress import Progress

log = logging.getLogger(__name__)

POLL_S = 0.2
# Files (or packs) uploaded at once, each holding the storage's parts in flight (S3: the object,
# up to 2 x 8 MiB); large files compressed at once, each with its zstd context (about 3.5 MiB):
# one of each, overlapping; the other threads hash or pack meanwhile.
UPLOADS_AT_ONCE = 1
ENCODES_AT_ONCE = 1


@dataclass
class DirectoryResult:
    raw_bytes: int
    new_bytes: int
    seconds: float
    targets: list[Target]
    toc: Any = None
    """What ``read_toc`` returned for the finished folder (its table of contents)."""


def check_spool_space(spool_dir: str, largest_table_bytes: int, jobs: int) -> None:
    """Refuse (exit 2) when the spool's file system cannot hold even the largest table's file;
    warn when it cannot hold ``jobs`` of them (uploads will not keep up, pg_dump may fail)."""
    free = shutil.disk_usage(spool_dir).free
    if free < largest_table_bytes:
        raise ConfigError(
            f"the spool {spool_dir} (TMPDIR) has {free / 1e6:.1f} MB free and the largest table "
            f"takes {largest_table_bytes / 1e6:.1f} MB: BACKUP_FORMAT=directory cannot spool it",
            hint="point TMPDIR at a volume with room for BACKUP_JOBS x the largest table "
            "(docs/large-databases.md)",
        )
    if free < largest_table_bytes * jobs:
        log.warning(
            "the spool %s (TMPDIR) has %.1f MB free, less than BACKUP_JOBS (%d) x the largest "
            "table (%.1f MB): the dump may run out of space",
            spool_dir,
            free / 1e6,
            jobs,
            largest_table_bytes / 1e6,
        )


def dump_directory(
    config: Config,
    argv_for: Callable[..., Sequence[str]],
    env: dict[str, str],
    storages: list[Storage],
    database: str,
    progress: Progress,
    read_toc: Callable[[str], Any],
) -> DirectoryResult:
    """pg_dump (``argv_for(directory=folder)``) into a spool under TMPDIR, each file stored
    as it is complete; raises if pg_dump fails or every destination does. (The spool's free space is
    checked by the caller before the run's first dump: ``check_spool_space``.)"""
    started = time.monotonic()
    suffix = object_suffix(config.codec.compression, config.codec.encrypted)
    targets = [Target(s) for s in storages]
    for target in targets:
        try:
            prepare(target, config, database, suffix)
        except BackupError as err:
            target.error = err
            log.error("%s: cannot store a directory-format backup: %s", target.storage.url, err)
    if all(t.error for t in targets):
        raise targets[0].error or StorageError("no destination")
    spool = make_spool(config)
    folder = os.path.join(spool, "dump")
    os.mkdir(folder, 0o700)
    encoded = os.path.join(spool, "stored")  # not pg_dump's folder: it lists only its files
    os.mkdir(encoded, 0o700)
    uploader = _Uploader(config, targets, database, suffix, folder, encoded)
    watch = FileWatch(folder)
    try:
        with ChildGroup() as children:
            argv = argv_for(directory=folder)
            dump = children.start(argv, env, "pg_dump", stdout=subprocess.DEVNULL)
            while dump.popen.poll() is None:
                for name in watch.poll(POLL_S):
                    uploader.submit(name)
                uploader.raise_failure()
                progress.update(uploader.raw_bytes, uploader.new_bytes)
            for name in watch.poll(0):
                uploader.submit(name)
            children.finish()
        toc = read_toc(folder)
        for name in sorted(os.listdir(folder)):
            uploader.submit(name)
        uploader.finish()
        progress.update(uploader.raw_bytes, uploader.new_bytes)
        for target in targets:
            if target.error is None:
                recheck(target, database)
    except BaseException:
        uploader.abort()
        for target in targets:
            remove_uploaded(target)
        raise
    finally:
        progress.close()
        watch.close()
        shutil.rmtree(spool, ignore_errors=True)
    for target in targets:
        if target.error is not None:
            remove_uploaded(target)
    if all(t.error for t in targets):
        raise targets[0].error or StorageError("no destination")
    return DirectoryResult(
        raw_bytes=uploader.raw_bytes,
        new_bytes=uploader.new_bytes,
        seconds=time.monotonic() - started,
        targets=targets,
        toc=toc,
    )


def remove_uploaded(target: Target) -> None:
    """This run's uploads that no manifest will name (the run or this destination failed)."""
    if not target.uploaded:
        return
    try:
        target.storage.delete(target.uploaded)
    except BackupError as err:
        log.warning("%s: could not remove this run's uploads: %s", target.storage.url, err)
    target.uploaded = []


class _Uploader:
    """Stores each submitted file of ``folder`` on every live target: ``jobs`` files hashed and
    encoded (into ``encoded``, the spool's) at a time, ``UPLOADS_AT_ONCE`` of them uploaded."""

    def __init__(
        self,
        config: Config,
        targets: list[Target],
        database: str,
        suffix: str,
        folder: str,
        encoded: str,
    ) -> None:
        self.config = config
        self.targets = targets
        self.database = database
        self.suffix = suffix
        self.folder = folder
        self.encoded = encoded
        self.tag = encoding_tag(config.codec)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.storing = threading.Semaphore(UPLOADS_AT_ONCE)
        self.encoding = threading.Semaphore(ENCODES_AT_ONCE)
        self.packer = Packer(
            config, targets, database, suffix, self.tag, encoded, self.storing, self.stop
        )
        self.pool = ThreadPoolExecutor(config.dump.jobs, thread_name_prefix="dir-upload")
        # only the futures not yet seen done: 3,000 finished ones (a Condition and a lock
        # each) would be memory held for nothing
        self.futures: list[Future[None]] = []
        self.submitted: set[str] = set()
        self.raw_bytes = 0
        self.new_bytes = 0
        # Two files of one dump may have the same content (two empty tables): one upload per
        # object, the other file waits for it and reuses it (an object uploaded twice, encrypted
        # twice, would no longer match the first file's recorded sha256).
        self.inflight: dict[tuple[int, str], threading.Event] = {}

    def submit(self, name: str) -> None:
        if name in self.submitted:
            return
        if not manifest.SAFE_FILE_NAME.fullmatch(name):
            raise StorageError(f"pg_dump wrote {name!r}, not a file of the directory format")
        self.submitted.add(name)
        self.futures.append(self.pool.submit(self._store, name))

    def raise_failure(self) -> None:
        running = []
        for future in self.futures:
            if not future.done():
                running.append(future)
            elif future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        self.futures = running

    def finish(self) -> None:
        wait(self.futures, return_when=FIRST_EXCEPTION)
        self.raise_failure()
        wait(self.futures)
        self.raise_failure()
        self.pool.shutdown()
        self.packer.flush()
        self.new_bytes += self.packer.new_bytes

    def abort(self) -> None:
        self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.packer.discard()

    def _store(self, name: str) -> None:
        path = os.path.join(self.folder, name)
        if packable(name, os.path.getsize(path), self.config.dump.pack_below_bytes):
            plain = self.packer.add(name, path, self.stop)
            with self.lock:
                self.raw_bytes += plain
            return
        live = [t for t in self.targets if t.error is None]
        addresses, plain = file_addresses(path, [t.key for t in live], self.tag)
        pending: list[tuple[Target, str]] = []
        checks: list[tuple[Target, str]] = []
        waits = []
        with self.lock:
            for target in live:
                key = manifest.content_key(self.database, addresses[target.key], self.suffix)
                busy = self.inflight.get((id(target), key))
                if busy is not None:
                    waits.append((target, key, busy))
                elif key in target.known:
                    target.files.append(_entry(name, key, plain, target.known[key], False))
                else:
                    self.inflight[(id(target), key)] = threading.Event()
                    (checks if key in target.suspect else pending).append((target, key))
        try:
            for target, key in checks:
                stored = target.suspect[key]
                if still_whole(target.storage, key, stored, self.stop):
                    with self.lock:
                        del target.suspect[key]
                        target.known[key] = stored
                        target.files.append(_entry(name, key, plain, stored, False))
                else:
                    pending.append((target, key))
            if pending:
                self._upload(name, path, plain, pending)
        finally:
            with self.lock:
                for target, key in checks + [p for p in pending if p not in checks]:
                    self.inflight.pop((id(target), key)).set()
        for target, key, busy in waits:
            while not busy.wait(POLL_S):
                if self.stop.is_set():
                    raise Interrupted("the directory-format backup was stopped")
            with self.lock:
                if key in target.known:
                    target.files.append(_entry(name, key, plain, target.known[key], False))
        os.unlink(path)
        with self.lock:
            self.raw_bytes += plain

    def _upload(self, name: str, path: str, plain: int, pending: list[tuple[Target, str]]) -> None:
        encoded = os.path.join(self.encoded, name)
        try:
            with self.encoding:
                size, sha256 = encode_file(self.config.codec, path, encoded, self.stop)
            with self.storing:
                errors = put_file(encoded, [(t.storage, key) for t, key in pending], self.stop)
        finally:
            remove(encoded)
        for error in errors:
            if isinstance(error, Interrupted) or not isinstance(error, Exception | None):
                raise error  # the run is stopping: not one destination's failure
        with self.lock:
            for (target, key), error in zip(pending, errors, strict=True):
                if error is None:
                    target.uploaded.append(key)
                    target.suspect.pop(key, None)
                    target.known[key] = Stored(size, sha256, None, "")
                    target.files.append(_entry(name, key, plain, target.known[key], True))
                elif target.error is None:
                    target.error = (
                        error
                        if isinstance(error, BackupError)
                        else StorageError(f"{target.storage.url}: upload of {name}: {error}")
                    )
            self.new_bytes += size


def _entry(name: str, key: str, plain: int, stored: Stored, new: bool) -> dict[str, Any]:
    """A file of the manifest; its ``fingerprint`` is the listing's, set by ``_recheck``."""
    return {
        "name": name,
        "key": key,
        "plain_bytes": plain,
        "size_bytes": stored.size,
        "sha256": stored.sha256,
        "new": new,
        "fingerprint": stored.fingerprint,
    }


def directory_manifest(base: Manifest, target: Target) -> Manifest:
    """``base`` (the run's facts) made the manifest of the files ``target`` holds."""
    files = sorted(target.files, key=lambda f: f["name"])
    toc = next(f["key"] for f in files if f["name"] == "toc.dat")
    return replace(
        base,
        format="directory",
        address_hash=ADDRESS_HASH,
        format_version=(
            manifest.PACKED_FORMAT_VERSION
            if any("offset" in f for f in files)
            else manifest.DIRECTORY_FORMAT_VERSION
        ),
        files=files,
        object_key=toc,
        size_bytes=sum(f["size_bytes"] for f in files),
        raw_size_bytes=sum(f["plain_bytes"] for f in files),
        sha256=manifest.files_digest(files),
    )


def pending(result: DirectoryResult, base: Manifest) -> list[Pending]:
    """Each destination's part of the commit (``dump/commit.py``): the manifest of the files
    it holds (its own list: what it reused, what it got), or why it gets none; a destination
    whose manifest cannot be written loses this run's new objects there."""
    log.info(
        "directory dump of %s done: %.2f MB in files, %.2f MB new stored, %.1f s",
        base.database,
        result.raw_bytes / 1e6,
        result.new_bytes / 1e6,
        result.seconds,
        extra={"stage": "dump", "database": base.database, "raw_bytes": result.raw_bytes},
    )
    parts = []
    for target in result.targets:
        undo = functools.partial(remove_uploaded, target)
        if target.error is not None:
            parts.append(Pending(target.storage, None, target.error.message, undo, stored=""))
            continue
        record = directory_manifest(base, target)
        stored = (
            f"{len(record.files)} files, {record.size_bytes} bytes, {record.new_bytes} of them new"
        )
        # verify's records of damaged objects this run stored anew (healed), and records
        # whose object is gone, are removed once the manifest is written
        healed = [
            target.damaged[f["key"]]
            for f in record.files
            if f["new"] and f["key"] in target.damaged
        ]
        after = functools.partial(damage.clear, target.storage, healed + target.stale_records)
        parts.append(
            Pending(
                target.storage,
                record,
                None,
                undo,
                stored,
                stored_bytes=record.new_bytes,
                after=after,
            )
        )
    return parts
