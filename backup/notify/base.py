"""The Notifier protocol: what every notification channel implements.

- ``name``: the channel's kind and host, safe to log (never its URL: it may hold a secret);
- ``heartbeat``: True for a channel whose silence raises an alarm by itself (healthchecks): it
  gets success reports even with ``NOTIFY_ON=failure``;
- ``start()``: called once when a backup run begins (healthchecks' ``/start`` ping); most
  channels do nothing;
- ``send(report)``: one run's report. It may raise; the caller (``notify.send_all``) logs and
  counts the failure, and it never changes the job's exit code nor stops the other notifiers.

A channel subclasses ``Notifier`` to inherit the defaults of ``heartbeat`` and ``start``.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from backup.job.outcome import RunReport


class Notifier(Protocol):
    name: str
    heartbeat: ClassVar[bool] = False

    def start(self) -> None:
        """A run begins; nothing to say by default."""

    def send(self, report: RunReport) -> None: ...
