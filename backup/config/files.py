"""Reading a small text file named by a variable (``NAME_FILE`` secrets, recipient lists).

Only a regular file is read: a FIFO, a device, a socket or a directory is refused from its
``stat`` without being opened, so nothing blocks (a FIFO with no writer) or runs forever
(``/dev/zero``). At most ``MAX_FILE_BYTES`` are read, and the text must be UTF-8. A problem
never quotes the file's contents.
"""

from __future__ import annotations

import os
import stat

MAX_FILE_BYTES = 64 * 1024
"""The largest file read (a secret, an identity, a list of recipients)."""


class FileProblem(ValueError):
    """The file cannot be used; the message names the path, never the contents."""


def read_small_text(path: str) -> str:
    """The UTF-8 text of the regular file ``path`` (at most ``MAX_FILE_BYTES``)."""
    try:
        before = os.stat(path)
    except OSError as err:
        raise FileProblem(f"cannot read {path}: {err.strerror or err}") from None
    _check_kind(path, before)
    # O_NONBLOCK: if the path was swapped for a FIFO since the stat, the open does not hang.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise FileProblem(f"cannot read {path}: {err.strerror or err}") from None
    try:
        _check_kind(path, os.fstat(fd))
        data = _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as err:
        raise FileProblem(f"cannot read {path}: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise FileProblem(f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(f"{path} is not UTF-8 text") from None


def _check_kind(path: str, info: os.stat_result) -> None:
    if stat.S_ISREG(info.st_mode):
        if info.st_size > MAX_FILE_BYTES:
            raise FileProblem(f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB")
        return
    kind = (
        "a directory"
        if stat.S_ISDIR(info.st_mode)
        else "a FIFO"
        if stat.S_ISFIFO(info.st_mode)
        else "a device"
        if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
        else "not a regular file"
    )
    raise FileProblem(f"{path} is {kind}, not a regular file")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
