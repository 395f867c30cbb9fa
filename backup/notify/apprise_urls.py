"""Every other channel, through apprise: one notifier per NOTIFY_URLS entry (Slack, Discord,
Teams, Matrix, ntfy, Gotify, Pushover, email over SMTP, ...: https://github.com/caronc/apprise/wiki).

One apprise object per entry, so a failure is counted and logged per target. The title is the
first line of the shared plain-text message (``message.py``), the body the rest. The report's
outcome becomes apprise's notify type (the colour or icon most services show): success ->
success, partial -> warning, failure -> failure, and an escalated report (ALERT_AFTER_FAILURES
reached) -> failure, titled with ``ESCALATION_MARK`` and sent at a higher priority on the
services that have one (``ESCALATION_PRIORITY``) unless the URL sets its own.

Delivery: every request apprise makes waits at most NOTIFY_TIMEOUT_SECONDS (its ``cto``/``rto``,
lowered to ours when the URL sets longer ones), the whole call at most ``deadline_s``; apprise
retries a failed send itself (its ``retry``/``wait``, ``Delivery.attempts`` in all unless the
URL sets ``retry=``): it knows which parts of a message (an email's recipients, a long message's
pieces) were already accepted and does not send them twice, which a retry of ours could not.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from backup.config import notify_urls
from backup.job.outcome import RunReport
from backup.notify.base import Notifier
from backup.notify.http import Delivery, NotificationFailed
from backup.notify.message import Wording, format_message

if TYPE_CHECKING:
    from backup.config import NotifyConfig, Secret

NOTIFY_TYPES = {"success": "success", "partial": "warning", "failure": "failure"}
"""RunReport.status -> apprise.NotifyType (its values); anything else is a failure."""
ESCALATION_MARK = "🚨"
# apprise's URL parameters for its request timeouts, and the plugin attributes they set.
TIMEOUTS = (("cto", "socket_connect_timeout"), ("rto", "socket_read_timeout"))
# Scheme -> the priority an escalated report is sent with, in each plugin's own values:
# https://github.com/caronc/apprise/wiki/Notify_ntfy ("max": urgent, long vibration bursts),
# https://github.com/caronc/apprise/wiki/Notify_gotify (8: high),
# https://github.com/caronc/apprise/wiki/Notify_pushover (1: high, bypasses quiet hours; 2
# would need an acknowledgement).
ESCALATION_PRIORITY: dict[str, object] = {
    "ntfy": "max",
    "ntfys": "max",
    "gotify": 8,
    "gotifys": 8,
    "pover": 1,
}


def _has_param(url: str, name: str) -> bool:
    """Whether the entry sets the query parameter ``name`` itself."""
    query = url.partition("?")[2]
    return re.search(rf"(?:^|&){re.escape(name)}=", query, re.IGNORECASE) is not None


def notify_type(report: RunReport) -> str:
    if report.escalated:  # never a success (RunReport.escalated)
        return "failure"
    return NOTIFY_TYPES.get(report.status, "failure")


def title_and_body(report: RunReport, wording: Wording | None = None) -> tuple[str, str]:
    """The shared plain-text message (in ``wording``'s language and time zone): its first line
    as the title, the rest as the body."""
    title, _, body = format_message(report, html=False, wording=wording).partition("\n")
    if report.escalated and ESCALATION_MARK not in title:
        title = f"{ESCALATION_MARK} {title}"
    return title.strip(), body.strip("\n")


def describe(plugin: Any) -> str:
    """The service's name, and its host where the URL's host is a host: safe to log. Elsewhere
    the host position holds a token (``slack://TokenA/...``, ``discord://WebhookID/...``,
    ``ntfy://topic``), so a host is shown only for services whose URL templates have one."""
    name = str(getattr(plugin, "service_name", None) or type(plugin).__name__)
    host = getattr(plugin, "host", None)
    templates = " ".join(getattr(plugin, "templates", ()) or ())
    if not host or "{host}" not in templates:
        return name
    port = getattr(plugin, "port", None)
    return f"{name} {host}:{port}" if port else f"{name} {host}"


class AppriseNotifier(Notifier):
    """One NOTIFY_URLS entry; named by its position, service and host (``describe``)."""

    def __init__(
        self,
        url: Secret,
        delivery: Delivery | None = None,
        index: int = 1,
        wording: Wording | None = None,
    ) -> None:
        self._url = url
        self.delivery = delivery or Delivery()
        self.index = index
        self.wording = wording or Wording()
        try:
            self.name = f"apprise {index} ({describe(self._plugin())})"
        except NotificationFailed:  # told when sending: building the notifiers never fails
            self.name = f"apprise {index}"

    @property
    def deadline_s(self) -> float:
        """The longest a send may take: every attempt timing out, and the waits between."""
        attempts = max(1, self.delivery.attempts)
        return attempts * self.delivery.timeout_s + (attempts - 1) * self.delivery.backoff_s

    def _plugin(self, escalated: bool = False) -> Any:
        """A fresh apprise plugin for the entry (no state shared between sends), with our
        timeouts and retries, and the escalation priority when asked."""
        apprise = notify_urls.load_apprise()
        url = self._url.reveal()
        with notify_urls.apprise_log() as messages:
            plugin = apprise.Apprise.instantiate(url)
        if plugin is None:  # accepted when the configuration was read: an apprise change?
            why = notify_urls.reason(messages, self._secrets())
            raise NotificationFailed(
                f"apprise {self.index}: apprise no longer accepts this URL"
                + (f" ({why})" if why else "")
            )
        for param, attribute in TIMEOUTS:
            timeout_s = self.delivery.timeout_s
            if _has_param(url, param):  # the URL's own, when shorter than ours
                timeout_s = min(float(getattr(plugin, attribute) or timeout_s), timeout_s)
            setattr(plugin, attribute, timeout_s)
        if not _has_param(url, "retry"):
            plugin.retry = max(0, self.delivery.attempts - 1)
            plugin.wait = self.delivery.backoff_s
        priority = ESCALATION_PRIORITY.get(notify_urls.scheme(url) or "")
        if escalated and priority is not None and not _has_param(url, "priority"):
            plugin.priority = priority
        return plugin

    def _secrets(self) -> list[str]:
        url = self._url.reveal()
        return [url, *notify_urls.secret_parts(url)]

    def send(self, report: RunReport) -> None:
        apprise = notify_urls.load_apprise()
        sender = apprise.Apprise()
        sender.add(self._plugin(escalated=report.escalated))
        title, body = title_and_body(report, self.wording)
        with notify_urls.apprise_log() as messages:
            try:
                result = sender.notify(
                    title=title,
                    body=body,
                    notify_type=notify_type(report),
                    body_format=apprise.NotifyFormat.TEXT,
                    timeout=self.deadline_s,
                )
            except Exception as err:  # apprise's own error text may quote the URL
                raise NotificationFailed(f"{self.name}: {type(err).__name__}") from None
        if result:
            return
        status = getattr(getattr(result, "status", None), "name", "")
        if status == "TIMEOUT":
            why: str | None = f"no answer within {self.deadline_s:g} s"
        else:
            why = notify_urls.reason(messages, self._secrets())
        raise NotificationFailed(f"{self.name}: {why or 'apprise reported a failure'}")


def from_config(config: NotifyConfig, delivery: Delivery | None = None) -> list[AppriseNotifier]:
    """One notifier per NOTIFY_URLS entry; apprise is imported only when there is one."""
    delivery = delivery or Delivery.from_config(config)
    wording = Wording.from_config(config)
    return [
        AppriseNotifier(url, delivery, index, wording)
        for index, url in enumerate(config.apprise_urls, start=1)
    ]
