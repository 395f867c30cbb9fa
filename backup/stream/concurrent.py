"""Several dumps streamed at once (``BACKUP_PARALLEL_DATABASES``): worker threads, and a stop
that reaches every one of them.

``run_each(items, work, workers)`` calls ``work(item)`` for every item, at most ``workers`` at
a time, and returns the results in the order of ``items`` (whatever order they end in). With one
worker it is a plain loop in the calling thread: the sequential run, unchanged.

The calling (main) thread only waits, so a signal (SIGTERM, SIGINT: ``Interrupted``) or
``BACKUP_TIMEOUT``'s alarm (``RunTimedOut``) is raised there. It then stops every worker the way
that exception stops a run of one database in the main thread:

- no item is started any more;
- each running worker gets an exception of the same class raised in its own thread
  (``PyThreadState_SetAsyncExc``: at its next Python instruction), so its own cleanup runs as in
  a sequential run: its children killed and reaped by their ``ChildGroup``, every upload of its
  stream aborted (``Fanout.abort``: nothing visible is left), no manifest written;
- a worker blocked reading a child's pipe (pg_dump waiting for a lock) hears it only once the
  child is gone: after ``CHILD_GRACE_S``, every child of the job still running is sent SIGTERM
  (``processes.terminate_running``), again until the workers have ended;
- the workers get ``STOP_DEADLINE_S`` in all (each upload's abort waits at most
  ``fanout.ABORT_DEADLINE_S``, each child ``processes.KILL_GRACE_S``); one still stuck (a
  request to a hung server) is a daemon thread, left behind as ``cli`` leaves stuck threads;
- then the exception is raised, as it would have been without workers.

An unexpected exception in a worker (a bug) starts no new item, lets the others finish theirs,
and is raised. Memory: ``workers`` streams at once, each bounded as ``pipeline.stream_dump``
says.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from backup.postgres import processes

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

_POLL_S = 0.5
CHILD_GRACE_S = 1.0
STOP_DEADLINE_S = 18.0


def run_each(
    items: Sequence[Item],
    work: Callable[[Item], Result],
    workers: int,
    name: str = "worker",
) -> list[Result]:
    """``work(item)`` for each item, ``workers`` at a time; the results in the items' order."""
    if workers <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    pending: queue.SimpleQueue[tuple[int, Item]] = queue.SimpleQueue()
    for numbered in enumerate(items):
        pending.put(numbered)
    results: dict[int, Result] = {}
    failures: list[BaseException] = []
    stopping = threading.Event()

    ended: queue.SimpleQueue[threading.Thread] = queue.SimpleQueue()

    def worker() -> None:
        try:
            while not stopping.is_set():
                try:
                    index, item = pending.get_nowait()
                except queue.Empty:
                    return
                results[index] = work(item)
        except BaseException as err:  # raised by the main thread once the others end
            failures.append(err)
            stopping.set()
        finally:
            ended.put(threading.current_thread())

    threads = [
        threading.Thread(target=worker, name=f"{name}-{n + 1}", daemon=True)
        for n in range(min(workers, len(items)))
    ]
    for thread in threads:
        thread.start()
    running = set(threads)
    try:
        # Not Thread.join: a signal handler's exception raised inside it marks the thread as
        # ended while it still runs (CPython's bpo-45274 handling); a queue read is safe.
        while running:
            with contextlib.suppress(queue.Empty):
                running.discard(ended.get(timeout=_POLL_S))
    except BaseException as reason:
        _stop(running, ended, stopping, reason)
        raise
    if failures:
        raise failures[0]
    return [results[index] for index in range(len(items))]


def _stop(
    running: set[threading.Thread],
    ended: queue.SimpleQueue[threading.Thread],
    stopping: threading.Event,
    reason: BaseException,
) -> None:
    """Stop every running worker with an exception like ``reason``; wait for them, bounded."""
    stopping.set()
    log.warning("stopping %d dump(s) in flight: %s", len(running), reason, extra={"stage": "abort"})
    stop = _same_kind(reason)
    for thread in running:
        _raise_in(thread, stop)
    started = time.monotonic()
    deadline = started + STOP_DEADLINE_S
    while running and time.monotonic() < deadline:
        if time.monotonic() - started >= CHILD_GRACE_S:
            processes.terminate_running()
        with contextlib.suppress(queue.Empty):
            running.discard(ended.get(timeout=0.1))
    if running:
        log.warning(
            "%d dump thread(s) did not stop within %.0f s: %s",
            len(running),
            STOP_DEADLINE_S,
            ", ".join(sorted(t.name for t in running)),
            extra={"stage": "abort"},
        )


def _same_kind(reason: BaseException) -> type[BaseException]:
    """A class raised with no arguments (what an asynchronous exception is) that every
    ``except`` treats as ``reason``: a subclass of its class carrying its message."""
    base = type(reason) if isinstance(reason, BaseException) else KeyboardInterrupt
    message = str(reason)

    def __init__(self: BaseException) -> None:
        base.__init__(self, message)

    return type(base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__})


def _raise_in(thread: threading.Thread, exception: type[BaseException]) -> None:
    """Raise ``exception`` in ``thread`` at its next Python instruction."""
    if thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exception)
    )
