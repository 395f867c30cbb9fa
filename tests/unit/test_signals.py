"""Signals: the first one stops the run; one more during the cleanup does not cut it short."""

from __future__ import annotations

import os
import signal

import pytest

from backup import cli
from backup.errors import Interrupted


def test_second_signal_during_cleanup_is_harmless() -> None:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        signal.signal(signal.SIGTERM, cli._on_signal)
        signal.signal(signal.SIGINT, cli._on_signal)
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
        # The cleanup is running now: neither signal may raise into it.
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
