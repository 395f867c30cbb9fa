"""stream/concurrent.run_each: results in order, a bug raised, and a stop in the main thread
raised in every worker (their own cleanup runs)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from backup.errors import Interrupted
from backup.stream.concurrent import run_each


def test_results_keep_the_items_order_whatever_ends_first():
    gates = {n: threading.Event() for n in range(6)}

    def work(n: int) -> int:
        if n < 5:
            gates[n + 1].wait(30)  # each waits for the next to start: the last ends first
        gates.get(n, threading.Event()).set()
        return n * 10

    gates[0].set()
    assert run_each(list(range(6)), work, 6) == [0, 10, 20, 30, 40, 50]


def test_one_worker_is_the_plain_loop_in_the_calling_thread():
    seen = run_each([1, 2], lambda _: threading.current_thread(), 1)
    assert seen == [threading.main_thread()] * 2


def test_a_bug_in_one_item_is_raised_once_the_others_end():
    done = []
    started = threading.Barrier(3)

    def work(n: int) -> int:
        if n < 3:
            started.wait(30)
        if n == 1:
            raise ValueError("bug")
        done.append(n)
        return n

    with pytest.raises(ValueError, match="bug"):
        run_each([0, 1, 2, 3], work, 3)
    assert {0, 2} <= set(done)  # the others started before it finished theirs


def test_a_signal_in_the_main_thread_stops_every_worker_with_the_same_error():
    cleaned: list[str] = []
    started = threading.Barrier(3)

    def work(n: int) -> None:
        started.wait(30)
        try:
            while True:
                time.sleep(0.01)
        except Interrupted as err:
            cleaned.append(str(err))
            raise

    def alarm(signum, frame):
        raise Interrupted("received SIGALRM")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Interrupted, match="SIGALRM"):
            run_each([0, 1, 2, 3], work, 3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert cleaned == ["received SIGALRM"] * 3  # the fourth item never started
