"""Progress of a long byte stream, both ways: a log line every ``BACKUP_PROGRESS_SECONDS``
(``0``: none), or a progress bar on a terminal (tqdm, on stderr).

``Progress`` is a dump's (bytes dumped and stored, rate: the total is not known in advance);
``ReadProgress`` is a stored backup read back by ``restore`` and ``verify`` (bytes read of the
manifest's size, percent, rate, time left). Both are called by the thread that moves the
bytes, on every chunk; a line costs nothing until its interval has passed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Progress:
    """A dump's progress: a log line every ``interval_s`` with the bytes dumped and stored so
    far and the rate; on a terminal, a progress bar instead."""

    def __init__(
        self,
        label: str,
        interval_s: float,
        terminal: bool | None = None,
        total_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.next_at = self.started + interval_s if interval_s > 0 else float("inf")
        if terminal is None:
            terminal = sys.stderr.isatty()
        self.bar = None
        if terminal and interval_s > 0:
            from tqdm import tqdm

            self.bar = tqdm(
                desc=label,
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
            )
        self._shown = 0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _due(self, shown_bytes: int) -> float | None:
        """The seconds elapsed when a log line is due now, else ``None`` (the bar, if any,
        moved to ``shown_bytes``)."""
        if self.bar is not None:
            self.bar.update(shown_bytes - self._shown)
            self._shown = shown_bytes
            return None
        now = self.clock()
        if now < self.next_at:
            return None
        self.next_at = now + self.interval_s
        return now - self.started

    def update(self, raw_bytes: int, stored_bytes: int) -> None:
        elapsed = self._due(raw_bytes)
        if elapsed is None:
            return
        log.info(
            "%s: %.1f MB dumped, %.1f MB stored, %.1f MB/s",
            self.label,
            raw_bytes / 1e6,
            stored_bytes / 1e6,
            raw_bytes / 1e6 / elapsed if elapsed else 0.0,
            extra={"stage": "progress", "raw_bytes": raw_bytes, "stored_bytes": stored_bytes},
        )


class ReadProgress(Progress):
    """A stored backup read back (restore, verify): bytes read of the manifest's size, the
    percent, the rate and the time left, every ``interval_s``; a bar with a total on a
    terminal."""

    def __init__(
        self,
        label: str,
        interval_s: float,
        total_bytes: int,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(label, interval_s, terminal, total_bytes, clock)
        self.total_bytes = total_bytes

    def read(self, done_bytes: int) -> None:
        elapsed = self._due(done_bytes)
        if elapsed is None:
            return
        log.info("%s", self.line(done_bytes, elapsed), extra=self.facts(done_bytes))

    def line(self, done_bytes: int, elapsed_s: float) -> str:
        """``restore shop-...: 12.3 of 50.0 MB read (24%), 5.1 MB/s, about 8 s left``."""
        total = self.total_bytes
        rate = done_bytes / elapsed_s if elapsed_s > 0 else 0.0
        text = (
            f"{self.label}: {done_bytes / 1e6:.1f} of {total / 1e6:.1f} MB read "
            f"({_percent(done_bytes, total)}%), {rate / 1e6:.1f} MB/s"
        )
        if rate > 0 and done_bytes < total:
            text += f", about {_duration((total - done_bytes) / rate)} left"
        return text

    def facts(self, done_bytes: int) -> dict[str, object]:
        return {
            "stage": "progress",
            "read_bytes": done_bytes,
            "total_bytes": self.total_bytes,
            "percent": _percent(done_bytes, self.total_bytes),
        }


def _percent(done: int, total: int) -> int:
    return min(100, done * 100 // total) if total > 0 else 100


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
