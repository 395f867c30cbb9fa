"""Which files of pg_dump's directory are complete while it still runs: Linux inotify's
``IN_CLOSE_WRITE`` on the spool folder, through ctypes (no package to install).

pg_dump -Fd writes each table's data to its own ``NNNN.dat`` (and each large object to its
``blob_<oid>.dat``), one worker opening, writing and closing it once; ``toc.dat`` and
``blobs*.toc`` are written at the end. So a data file is complete at its close, and everything
else is complete when pg_dump has exited 0. Where inotify is not available, ``FileWatch``
reports nothing and every file is taken after the exit: the spool then holds the whole dump.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import select
import struct

log = logging.getLogger(__name__)

IN_CLOSE_WRITE = 0x00000008
_EVENT = struct.Struct("iIII")
# Files written once and closed by a worker; the others are complete only at pg_dump's exit.
STREAMABLE = re.compile(r"^([0-9]+|blob_[0-9]+)\.dat$")


class FileWatch:
    """Names of the files closed after writing in ``folder``, as they come (``poll``)."""

    def __init__(self, folder: str) -> None:
        self.fd = -1
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(folder), IN_CLOSE_WRITE) < 0:
                os.close(fd)
                raise OSError(ctypes.get_errno(), "inotify_add_watch")
            self.fd = fd
        except (OSError, AttributeError) as err:
            log.info(
                "no inotify (%s): the files of the dump are stored once pg_dump has finished, "
                "so the spool holds the whole dump",
                err,
            )

    @property
    def active(self) -> bool:
        return self.fd >= 0

    def poll(self, timeout_s: float) -> list[str]:
        """The data files closed since the last call (waits at most ``timeout_s``)."""
        if self.fd < 0:
            select.select([], [], [], timeout_s)
            return []
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return []
        names = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                offset += _EVENT.size + length
                name = raw.rstrip(b"\0").decode("utf-8", "replace")
                if mask & IN_CLOSE_WRITE and STREAMABLE.fullmatch(name):
                    names.append(name)
        return names

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
