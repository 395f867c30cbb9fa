"""The progress lines of a stored backup read back: percent, rate and time left, on time."""

from __future__ import annotations

import logging

from backup.stream.progress import ReadProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_with_percent_rate_and_time_left(caplog):
    clock = Clock()
    progress = ReadProgress("restore shop-1", 10.0, 50_000_000, terminal=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="backup.stream.progress"):
        clock.now += 5
        progress.read(1_000_000)  # not yet due
        clock.now += 5
        progress.read(12_500_000)
        clock.now += 1
        progress.read(13_000_000)  # the next one is due at +20 s
    assert [r.getMessage() for r in caplog.records] == [
        "restore shop-1: 12.5 of 50.0 MB read (25%), 1.2 MB/s, about 30 s left"
    ]
    assert caplog.records[0].percent == 25
    assert caplog.records[0].total_bytes == 50_000_000


def test_long_reads_say_minutes_or_hours_and_zero_is_off(caplog):
    clock = Clock()
    progress = ReadProgress("verify x", 1.0, 10_000_000_000, terminal=False, clock=clock)
    assert progress.line(1_000_000_000, 100.0).endswith("(10%), 10.0 MB/s, about 15 min left")
    assert progress.line(10_000_000, 10.0).endswith("about 2.8 h left")
    assert progress.line(10_000_000_000, 10.0).endswith("(100%), 1000.0 MB/s")
    off = ReadProgress("verify x", 0.0, 100, terminal=True, clock=clock)
    assert off.bar is None
    with caplog.at_level(logging.INFO):
        clock.now += 1_000
        off.read(50)
    assert not caplog.records
