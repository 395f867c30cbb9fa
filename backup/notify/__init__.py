"""Notifiers: Telegram, webhooks, healthchecks pings, apprise URLs; ``base.py`` holds the
protocol.

This module picks and drives them:

- ``build_notifiers(config)`` picks the notifiers from the configuration (a table of factories,
  imported lazily);
- ``start_all(notifiers)`` tells each that a run begins (healthchecks' ``/start`` ping);
- ``send_all(notifiers, report, notify_on)`` sends one report through each of them and returns
  how many failed.

Neither ever raises: a failing notifier is logged and counted, the others still send, and the
job's exit code does not change. ``message.py`` is the text every channel shares and ``http.py``
the one POST (timeout, bounded retry) they all send. To add a channel: a module with a
``Notifier`` subclass and a ``from_config(config, delivery)`` factory, one line in ``FACTORIES``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backup.job.outcome import RunReport
from backup.notify.base import Notifier
from backup.notify.http import Delivery, NotificationFailed

if TYPE_CHECKING:
    from backup.config import NotifyConfig

log = logging.getLogger(__name__)

# "module:function" factories, each returning the notifiers its part of the config asks for
# (none when unset); imported lazily like the storage backends.
FACTORIES: tuple[str, ...] = (
    "backup.notify.telegram:from_config",
    "backup.notify.webhook:from_config",
    "backup.notify.healthchecks:from_config",
    "backup.notify.apprise_urls:from_config",
)

NOTIFY_ON = ("always", "failure")


def build_notifiers(config: NotifyConfig, delivery: Delivery | None = None) -> list[Notifier]:
    """Every notifier ``config`` asks for, in a fixed order: Telegram, webhooks, healthchecks,
    apprise URLs.

    ``delivery`` overrides the timeout and retry taken from ``config`` (tests use short waits).
    """
    delivery = delivery or Delivery.from_config(config)
    notifiers: list[Notifier] = []
    for spec in FACTORIES:
        module_name, _, function_name = spec.partition(":")
        factory = getattr(importlib.import_module(module_name), function_name)
        notifiers.extend(factory(config, delivery))
    return notifiers


def wanted(notifier: Notifier, report: RunReport, notify_on: str) -> bool:
    """Does ``notifier`` get ``report``? Every failure and partial run goes everywhere. A
    success goes to a heartbeat (healthchecks) only when it is a backup's, whatever NOTIFY_ON
    says (a verify that passes must not stand in for a missing backup); to the others unless
    NOTIFY_ON=failure, but a recovery always (it ends an alert people received)."""
    if report.status != "success":
        return True
    if getattr(notifier, "heartbeat", False):  # a bare object with send() is a channel too
        return report.command == "backup"
    return notify_on != "failure" or report.recovered


def send_all(notifiers: Sequence[Notifier], report: RunReport, notify_on: str = "always") -> int:
    """Send ``report`` through each notifier; return how many failed. Never raises.

    ``notify_on`` is NOTIFY_ON: ``always``, or ``failure`` (success reports go only to
    heartbeat notifiers, i.e. healthchecks, whose silence would otherwise raise an alarm, and
    a recovery to every channel); ``wanted`` decides.
    """
    failed = 0
    for notifier in notifiers:
        name = notifier.name
        if not wanted(notifier, report, notify_on):
            log.debug(
                "notify: %s skipped (NOTIFY_ON=%s, %s succeeded)", name, notify_on, report.command
            )
            continue
        try:
            notifier.send(report)
        except NotificationFailed as err:
            failed += 1
            log.error("notify: %s failed: %s", name, err)
        except Exception as err:  # a notifier must never stop the others nor the job
            failed += 1
            log.error("notify: %s failed: %s", name, type(err).__name__)
        else:
            log.info("notify: %s sent (%s)", name, report.status)
    return failed


def start_all(notifiers: Sequence[Notifier]) -> int:
    """Tell each notifier that a run begins; return how many failed. Never raises."""
    failed = 0
    for notifier in notifiers:
        try:
            notifier.start()
        except NotificationFailed as err:
            failed += 1
            log.error("notify: %s start ping failed: %s", notifier.name, err)
        except Exception as err:  # the run must go on without its start ping
            failed += 1
            log.error("notify: %s start ping failed: %s", notifier.name, type(err).__name__)
    return failed


__all__ = ["Delivery", "NotificationFailed", "Notifier", "build_notifiers", "send_all", "start_all"]
