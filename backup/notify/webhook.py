"""Webhook notifications: a JSON POST of the run report to each NOTIFY_WEBHOOK_URL.

The payload carries the report's facts for machines and the human message for people: ``text``
(what Slack incoming webhooks display) and ``content`` (Discord's field, at most 2,000
characters) hold the shared plain-text message (``message.py``), the Telegram one without markup,
in NOTIFY_LANGUAGE; ``event`` says which message it is (``success``, ``failure``, ``partial``,
``escalation``, ``recovery``). The other fields are for machines: English words, UTC times.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from backup.job.outcome import DatabaseResult, RunReport
from backup.notify.base import Notifier
from backup.notify.http import Delivery, post, safe_host
from backup.notify.message import Wording, event, format_message

if TYPE_CHECKING:
    from backup.config import NotifyConfig, Secret

# https://discord.com/developers/docs/resources/webhook#execute-webhook: content, "up to 2000
# characters"; a longer one is refused with HTTP 400.
DISCORD_MAX_CHARS = 2000


def iso_utc(moment: datetime | None) -> str | None:
    """``2025-11-10T03:00:15Z``; a naive datetime is taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _result(result: DatabaseResult) -> dict[str, object]:
    return {
        "database": result.database,
        "status": result.status,
        "name": result.name,
        "size_bytes": result.size_bytes,
        "raw_bytes": result.raw_bytes,
        "duration_s": round(result.duration_s, 3),
        "error": result.error,
        "hint": result.hint,
        "destinations": [{"url": d.url, "ok": d.ok, "error": d.error} for d in result.destinations],
    }


def payload(report: RunReport, wording: Wording | None = None) -> dict[str, object]:
    """The JSON document POSTed for ``report`` (README, 'Webhooks', shows an example)."""
    text = format_message(report, html=False, wording=wording)
    names = [r.name for r in report.results if r.name]
    failed = sorted({d.url for r in report.results for d in r.destinations if not d.ok})
    return {
        "event": event(report),
        "status": report.status,
        "command": report.command,
        "exit_code": report.exit_code,
        "host": report.host,
        "database": ", ".join(report.databases),
        "databases": report.databases,
        "name": ", ".join(names) if names else None,
        "size_bytes": report.size_bytes,
        "duration_s": round(report.duration_s, 3),
        "destinations": report.destinations,
        "failed_destinations": failed,
        "error": report.error,
        "hint": report.hint,
        "consecutive_failures": report.consecutive_failures,
        "escalated": report.escalated,
        "previous_failures": report.previous_failures,
        "last_success_at": iso_utc(report.last_success_at),
        "started_at": iso_utc(report.started_at),
        "finished_at": iso_utc(report.finished_at),
        "retention_days": report.retention_days,
        "results": [_result(r) for r in report.results],
        "text": text,
        "content": text if len(text) <= DISCORD_MAX_CHARS else text[: DISCORD_MAX_CHARS - 1] + "…",
    }


class WebhookNotifier(Notifier):
    """One NOTIFY_WEBHOOK_URL; named by its host only, since its path is often the secret."""

    def __init__(
        self,
        url: Secret,
        delivery: Delivery | None = None,
        index: int = 1,
        wording: Wording | None = None,
    ) -> None:
        self._url = url
        self.delivery = delivery or Delivery()
        self.name = f"webhook {index} ({safe_host(url.reveal())})"
        self.wording = wording or Wording()

    def send(self, report: RunReport) -> None:
        body = payload(report, self.wording)
        post(self._url.reveal(), label=self.name, delivery=self.delivery, json=body)


def from_config(config: NotifyConfig, delivery: Delivery | None = None) -> list[WebhookNotifier]:
    """One notifier per NOTIFY_WEBHOOK_URL entry."""
    delivery = delivery or Delivery.from_config(config)
    wording = Wording.from_config(config)
    return [
        WebhookNotifier(url, delivery, index, wording)
        for index, url in enumerate(config.webhook_urls, start=1)
    ]
