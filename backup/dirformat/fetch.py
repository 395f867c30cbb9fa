"""The read side of a directory-format backup: every file the manifest lists downloaded,
``jobs`` at a time, its size and sha256 checked against the manifest on the way
(``VerifyingReader``), decrypted, decompressed and written into a folder named as in
``toc.dat``: what ``pg_restore -Fd`` reads.

A manifest that is not believed about its own backup is refused before anything is read
(exit 5): an object outside its database's ``_objects/`` folder, or a file name that is not one
of pg_dump's (``../x``) never reaches the disk. A mismatch, an undecodable or a missing object
is a ``DamagedFile`` (exit 5) naming the object's key, the file and, with ``tools``, what it
holds (``damage.py``); ``toc.dat`` is read first so that it can be named from it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from backup.config import CodecConfig
from backup.dirformat.damage import DamagedFile, hint_for, others_naming, what_file_holds
from backup.errors import BackupError, IntegrityError, Interrupted, ObjectNotFound
from backup.manifest import SAFE_FILE_NAME, Manifest, untrusted_error
from backup.postgres.pg_restore_dir import list_folder
from backup.postgres.tools import Tools
from backup.storage import Storage
from backup.stream.codec import open_decoder
from backup.stream.progress import ReadProgress
from backup.stream.readback import CHUNK_BYTES, VerifyingReader

log = logging.getLogger(__name__)


def check_readable(codec: CodecConfig, m: Manifest) -> None:
    """Refuse (exit 5) a manifest not believed, or an encrypted backup no key here opens."""
    reason = m.problem()
    if reason:
        raise untrusted_error(m.key, reason)
    if m.encrypted and not (codec.age_identity or codec.age_passphrase):
        raise IntegrityError(
            f"{m.name} is encrypted and no key is configured",
            hint="set BACKUP_AGE_IDENTITY or BACKUP_AGE_IDENTITY_FILE (or BACKUP_AGE_PASSPHRASE)",
        )
    if m.encrypted and m.encryption:
        from backup.stream.age import identity_matches

        recipients = list(m.encryption.get("recipients", []))
        if identity_matches(codec, recipients) is False:
            raise IntegrityError(
                f"{m.name} was encrypted to other keys than BACKUP_AGE_IDENTITY",
                hint="use the private key of one of the recipients recorded in the manifest "
                f"({', '.join(recipients)})",
            )


class _Tally:
    """One progress line for every file read at once: each file's reader tells its own count
    (``VerifyingReader`` calls ``read``/``close``), the sum goes to the ``ReadProgress``."""

    def __init__(self, progress: ReadProgress) -> None:
        self.progress = progress
        self.lock = threading.Lock()
        self.total = 0

    def for_file(self) -> _FileTally:
        return _FileTally(self)


class _FileTally:
    def __init__(self, tally: _Tally) -> None:
        self.tally = tally
        self.seen = 0

    def read(self, done_bytes: int) -> None:
        with self.tally.lock:
            self.tally.total += done_bytes - self.seen
            self.seen = done_bytes
            self.tally.progress.read(self.tally.total)

    def close(self) -> None:
        """The whole backup's progress is closed by ``fetch_folder``, not by one file."""


def fetch_folder(
    codec: CodecConfig,
    storage: Storage,
    m: Manifest,
    folder: str,
    jobs: int,
    keep: Callable[[str], bool] = lambda name: True,
    progress_s: float = 0.0,
    purpose: str = "read",
    only: Callable[[str], bool] = lambda name: True,
    tools: Tools | None = None,
) -> int:
    """Download, check and decode every file of ``m`` into ``folder`` (which must exist);
    a file for which ``keep(name)`` is false is checked and decoded to its end but not
    written. Returns the stored bytes read. ``progress_s``: a line ``<purpose> <name>: X of
    Y MB read ...`` that often, all files together (BACKUP_PROGRESS_SECONDS). A file for which
    ``only(name)`` is false is not read at all (``restore --table``: toc.dat and the chosen
    tables' files); the manifest is still checked as a whole first. ``tools``: pg_restore, to
    name the table a damaged file holds (from the toc.dat already read)."""
    check_readable(codec, m)
    stop = threading.Event()
    progress = ReadProgress(f"{purpose} {m.name}", progress_s, m.size_bytes) if progress_s else None
    tally = _Tally(progress) if progress else None
    chosen = [e for e in m.files if only(e["name"])]
    # toc.dat first: a damaged file is then named with the table it holds.
    chosen.sort(key=lambda e: e["name"] != "toc.dat")
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="dir-download") as pool:
        futures = []
        try:
            if chosen and chosen[0]["name"] == "toc.dat":
                toc = _fetch_one(codec, storage, m, chosen[0], folder, keep, stop, tally)
            else:
                toc = 0
            whole, alone = _whole_packs(m, [e for e in chosen if e["name"] != "toc.dat"])
            futures = [
                pool.submit(_fetch_one, codec, storage, m, entry, folder, keep, stop, tally)
                for entry in alone
            ] + [
                pool.submit(_fetch_pack, codec, storage, m, members, folder, keep, stop, tally)
                for members in whole
            ]
            total = toc + sum(f.result() for f in futures)
        except DamagedFile as err:
            stop.set()
            for future in futures:
                future.cancel()
            raise _named(err, storage, m, folder, tools) from err
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise
        finally:
            if progress is not None:
                progress.close()
    log.info(
        "%s: %d files, %d bytes read from %s, sha256 ok",
        m.name,
        len(chosen),
        total,
        storage.url,
        extra={"stage": "restore", "destination": storage.url},
    )
    return total


def _whole_packs(
    m: Manifest, chosen: list[dict[str, Any]]
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """The packs every file of which is chosen (read whole, in one request, each file in
    turn), and the files read alone (an object of their own, or a range of a pack of which
    only some files are chosen: ``restore --table``)."""
    in_pack: dict[str, int] = {}
    for entry in m.files:
        if "offset" in entry:
            in_pack[entry["key"]] = in_pack.get(entry["key"], 0) + 1
    groups: dict[str, list[dict[str, Any]]] = {}
    alone = []
    for entry in chosen:
        if "offset" in entry:
            groups.setdefault(entry["key"], []).append(entry)
        else:
            alone.append(entry)
    whole = []
    for key, members in groups.items():
        if len(members) == in_pack[key]:
            whole.append(sorted(members, key=lambda e: e["offset"]))
        else:
            alone.extend(members)
    return whole, alone


class _Part:
    """The next ``left`` bytes of a pack being read whole; closing it leaves the pack open."""

    def __init__(self, source: Any, left: int) -> None:
        self.source = source
        self.left = left

    def read(self, size: int = -1, /) -> bytes:
        if self.left <= 0:
            return b""
        data: bytes = self.source.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        return None


def _fetch_pack(
    codec: CodecConfig,
    storage: Storage,
    m: Manifest,
    members: list[dict[str, Any]],
    folder: str,
    keep: Callable[[str], bool],
    stop: threading.Event,
    tally: _Tally | None,
) -> int:
    """Every file of one pack (``members``, by offset) from one read of the whole pack."""
    key = members[0]["key"]
    log.debug("reading the pack %s whole: %d files", key, len(members))
    opened: list[Any] = []
    position = 0

    def part(entry: dict[str, Any]) -> Any:
        nonlocal position
        if not opened:
            opened.append(storage.open(key))
        gap = entry["offset"] - position
        while gap > 0 and (skipped := opened[0].read(min(gap, CHUNK_BYTES))):
            gap -= len(skipped)
        position = entry["offset"] + entry["size_bytes"]
        return _Part(opened[0], entry["size_bytes"])

    total = 0
    try:
        for entry in members:
            total += _fetch_one(
                codec, storage, m, entry, folder, keep, stop, tally, lambda e=entry: part(e)
            )
    finally:
        if opened:
            opened[0].close()
    return total


def _fetch_one(
    codec: CodecConfig,
    storage: Storage,
    m: Manifest,
    entry: dict[str, Any],
    folder: str,
    keep: Callable[[str], bool],
    stop: threading.Event,
    tally: _Tally | None,
    opener: Callable[[], Any] | None = None,
) -> int:
    name = entry["name"]
    if not SAFE_FILE_NAME.fullmatch(name):  # problem() refused it already; never a path
        raise untrusted_error(m.key, f"lists the file {name!r}")
    expected = replace(
        m, name=f"{m.name} ({name})", size_bytes=entry["size_bytes"], sha256=entry["sha256"]
    )
    try:
        return _read_one(codec, storage, m, entry, expected, folder, keep, stop, tally, opener)
    except ObjectNotFound as err:
        raise DamagedFile(
            f"{m.name} on {storage.url}: the object {entry['key']} ({name}) is missing",
            key=entry["key"],
            file=name,
            missing=True,
        ) from err
    except IntegrityError as err:
        if isinstance(err, DamagedFile):
            raise
        raise DamagedFile(
            f"{m.name} on {storage.url}: the object {entry['key']} ({name}) is damaged: "
            f"{err.message}",
            hint_for(m),
            key=entry["key"],
            file=name,
        ) from err


def _read_one(
    codec: CodecConfig,
    storage: Storage,
    m: Manifest,
    entry: dict[str, Any],
    expected: Manifest,
    folder: str,
    keep: Callable[[str], bool],
    stop: threading.Event,
    tally: _Tally | None,
    opener: Callable[[], Any] | None,
) -> int:
    name = entry["name"]
    if opener is not None:  # the next part of a pack read whole
        raw = opener()
    elif "offset" in entry:  # a file inside a pack: its range alone
        log.debug(
            "reading %s: %d bytes at %d of the pack %s",
            name,
            entry["size_bytes"],
            entry["offset"],
            entry["key"],
        )
        raw = storage.open_range(entry["key"], entry["offset"], entry["size_bytes"])
    else:
        raw = storage.open(entry["key"])
    try:
        shared = tally.for_file() if tally is not None else None
        verifying = VerifyingReader(raw, expected, storage.url, shared)  # type: ignore[arg-type]
        plain = open_decoder(verifying, m.compression, m.encrypted, codec)
        out = None
        if keep(name):
            fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            out = os.fdopen(fd, "wb")
        try:
            written = 0
            while chunk := plain.read(CHUNK_BYTES):
                if stop.is_set():
                    raise Interrupted("the download was stopped")
                written += len(chunk)
                if out is not None:
                    out.write(chunk)
            verifying.drain()
        finally:
            if out is not None:
                out.close()
        if written != entry["plain_bytes"]:
            raise IntegrityError(
                f"{m.name}: {name} decodes to {written} bytes, the manifest says "
                f"{entry['plain_bytes']}"
            )
        return verifying.size
    finally:
        raw.close()


def _named(
    err: DamagedFile, storage: Storage, m: Manifest, folder: str, tools: Tools | None
) -> DamagedFile:
    """``err`` with what the file holds (the table) and, for a missing object, which other
    backups name it."""
    holds = ""
    if tools is not None and err.file != "toc.dat" and os.path.exists(f"{folder}/toc.dat"):
        try:
            holds = what_file_holds(list_folder(tools, folder), err.file)
        except BackupError as list_err:
            log.debug("cannot read the table of contents to name %s: %s", err.file, list_err)
    elif err.file == "toc.dat" or not err.file.endswith(".dat") or err.file.startswith("blob"):
        holds = what_file_holds("", err.file)
    message = err.message.replace(
        f"({err.file})", f"({err.file}: {holds})" if holds else f"({err.file})", 1
    )
    hint = err.hint
    if err.missing:
        others = others_naming(storage, m, err.key)
        hint = (
            "the backup is damaged: that object was deleted or lost. "
            + (
                f"Other backups naming it, damaged too: {', '.join(others[:10])}"
                + (f" and {len(others) - 10} more" if len(others) > 10 else "")
                if others
                else "No other backup names it"
            )
            + "; restore another backup, or from another destination"
        )
    return DamagedFile(message, hint, key=err.key, file=err.file, missing=err.missing)
