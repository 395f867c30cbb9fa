"""healthchecks.io-style pings: ``<url>/start`` when a run begins, ``<url>`` on success,
``<url>/fail`` on failure or partial.

The success and failure pings carry the last log lines as their body, so the check's page shows
why a run failed. These pings are the heartbeat: they go even with NOTIFY_ON=failure, since a
missing success ping is what makes healthchecks raise the alarm.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from backup.job.outcome import RunReport
from backup.notify.base import Notifier
from backup.notify.http import Delivery, post, safe_host

if TYPE_CHECKING:
    from backup.config import NotifyConfig, Secret

log = logging.getLogger(__name__)

# https://healthchecks.io/docs/attaching_logs/: the request body is stored as the ping's log,
# up to a limit (10 kB on many instances); the end of the log is where the error is, so the end
# is what is kept.
MAX_BODY_BYTES = 10_000
TRUNCATED_MARK = "[... earlier lines truncated]\n"


def ping_url(url: str, suffix: str = "") -> str:
    """``url`` with ``/suffix`` appended to its path, its query kept."""
    if not suffix:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{suffix}"))


def summary(report: RunReport) -> str:
    databases = ", ".join(report.databases) or "-"
    line = (
        f"pgbackup {report.command} {report.status} (exit {report.exit_code}) "
        f"databases={databases} size_bytes={report.size_bytes} duration_s={report.duration_s:.1f}"
    )
    return f"{line} error={report.error}" if report.error else line


def ping_body(report: RunReport, limit: int = MAX_BODY_BYTES) -> bytes:
    """A summary line, then the log tail; at most ``limit`` bytes, the newest lines kept."""
    head = (summary(report) + "\n").encode()
    tail = "\n".join(report.log_tail).encode()
    if len(head) + len(tail) <= limit:
        return head + tail
    mark = TRUNCATED_MARK.encode()
    room = max(0, limit - len(head) - len(mark))
    kept = tail[len(tail) - room :] if room else b""
    # Start at a line boundary, which also never splits a UTF-8 character.
    newline = kept.find(b"\n")
    kept = kept[newline + 1 :] if newline >= 0 else b""
    return (head + mark + kept)[:limit]


class HealthchecksNotifier(Notifier):
    """Pings one HEALTHCHECK_URL; named by its host only (the URL's path is the check's key)."""

    heartbeat = True

    def __init__(self, url: Secret, delivery: Delivery | None = None) -> None:
        self._url = url
        self.delivery = delivery or Delivery()
        self.name = f"healthchecks ({safe_host(url.reveal())})"

    def start(self) -> None:
        post(ping_url(self._url.reveal(), "start"), label=self.name, delivery=self.delivery)
        log.info("notify: %s start ping sent", self.name)

    def send(self, report: RunReport) -> None:
        suffix = "" if report.status == "success" else "fail"
        post(
            ping_url(self._url.reveal(), suffix),
            label=self.name,
            delivery=self.delivery,
            data=ping_body(report),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )


def from_config(
    config: NotifyConfig, delivery: Delivery | None = None
) -> list[HealthchecksNotifier]:
    """One notifier when HEALTHCHECK_URL is set, else none."""
    if not config.healthcheck_url:
        return []
    return [HealthchecksNotifier(config.healthcheck_url, delivery or Delivery.from_config(config))]
