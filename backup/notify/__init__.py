"""Notifiers: Telegram, webhooks, healthchecks pings; see ``base.py`` for the protocol.

This module owns what every notifier shares:

- ``build_notifiers(config)`` picks the notifiers from the configuration (a table of factories,
  imported lazily);
- ``send_all(notifiers, report, notify_on)`` sends one report through each of them and returns
  how many failed. It never raises: a failing notifier is logged and counted, the others still
  send, and the job's exit code does not change;
- ``ping_start(config)`` sends the healthchecks ``/start`` ping when a run begins;
- ``post(...)``: one HTTP POST with a timeout and a bounded retry (tenacity, exponential backoff)
  on connection errors, 5xx and 429 only. A 4xx is a permanent error and is not resent.

Notifier URLs embed secrets (the bot token, a webhook's path, a healthcheck's UUID): log lines
and error messages name a notifier by its ``name`` (kind and host), never by its URL.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from backup.notify.base import Notifier, RunReport

if TYPE_CHECKING:
    from backup.config import NotifyConfig

log = logging.getLogger(__name__)

# "module:function" factories, each returning the notifiers its part of the config asks for
# (none when unset); imported lazily like the storage backends.
FACTORIES: tuple[str, ...] = (
    "backup.notify.telegram:from_config",
    "backup.notify.webhook:from_config",
    "backup.notify.healthchecks:from_config",
)

NOTIFY_ON = ("always", "failure")


@dataclass(frozen=True)
class Delivery:
    """How one notification request is sent: its timeout and its bounded retry."""

    timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 1.0
    """First wait between attempts; doubles after each one, up to ``max_backoff_s``."""
    max_backoff_s: float = 10.0

    @classmethod
    def from_config(cls, config: NotifyConfig) -> Delivery:
        return cls(timeout_s=config.timeout_s, attempts=max(1, config.attempts))


class NotificationFailed(Exception):
    """A notification request failed; the message is safe to log (no URL, no token)."""

    def __init__(self, message: str, retryable: bool = False, retry_after_s: float = 0.0):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def safe_host(url: str) -> str:
    """The host (and port) of ``url``, without credentials, path or query: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def check_status(response: requests.Response, label: str) -> None:
    """Raise ``NotificationFailed`` for an HTTP error; 5xx and 429 may be retried, 4xx not."""
    status = response.status_code
    if status < 400:
        return
    retryable = status >= 500 or status == 429
    raise NotificationFailed(
        f"{label}: HTTP {status}", retryable=retryable, retry_after_s=_retry_after(response)
    )


def post(
    url: str,
    *,
    label: str,
    delivery: Delivery,
    check: Callable[[requests.Response, str], None] = check_status,
    **kwargs: Any,
) -> requests.Response:
    """POST to ``url`` with ``delivery``'s timeout and retries; return the accepted response.

    ``label`` names the target in messages (never the URL: it may hold a secret). ``check``
    raises ``NotificationFailed`` when the response is an error. Raises ``NotificationFailed``
    once the attempts are spent or at the first permanent error. A read timeout is not resent:
    the server may have acted on the request already, and a resend would repeat the wait.
    """

    def once() -> requests.Response:
        try:
            response = requests.post(url, timeout=delivery.timeout_s, **kwargs)
        except requests.ConnectionError as err:
            # Includes ConnectTimeout; requests' own text names the URL, so it is not kept.
            raise NotificationFailed(
                f"{label}: cannot connect ({type(err).__name__})", retryable=True
            ) from None
        except requests.Timeout:
            raise NotificationFailed(
                f"{label}: no answer within {delivery.timeout_s:g} s"
            ) from None
        except requests.RequestException as err:
            raise NotificationFailed(f"{label}: request failed ({type(err).__name__})") from None
        check(response, label)
        return response

    def wait(state: RetryCallState) -> float:
        backoff = delivery.backoff_s * 2 ** (state.attempt_number - 1)
        error = state.outcome.exception() if state.outcome else None
        hint = error.retry_after_s if isinstance(error, NotificationFailed) else 0.0
        return min(max(backoff, hint), delivery.max_backoff_s)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s (attempt %d of %d), retrying", error, state.attempt_number, delivery.attempts
        )

    retrying = Retrying(
        stop=stop_after_attempt(max(1, delivery.attempts)),
        wait=wait,
        retry=retry_if_exception(lambda e: isinstance(e, NotificationFailed) and e.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(once)


def build_notifiers(config: NotifyConfig, delivery: Delivery | None = None) -> list[Notifier]:
    """Every notifier ``config`` asks for, in a fixed order: Telegram, webhooks, healthchecks.

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
    """NOTIFY_ON=failure keeps only non-success reports, except heartbeats (healthchecks)."""
    if notify_on != "failure" or report.status != "success":
        return True
    return bool(getattr(notifier, "heartbeat", False))


def send_all(notifiers: Sequence[Notifier], report: RunReport, notify_on: str = "always") -> int:
    """Send ``report`` through each notifier; return how many failed. Never raises.

    ``notify_on`` is NOTIFY_ON: ``always``, or ``failure`` (success reports go only to
    heartbeat notifiers, i.e. healthchecks, whose silence would otherwise raise an alarm).
    """
    failed = 0
    for notifier in notifiers:
        name = getattr(notifier, "name", type(notifier).__name__)
        if not wanted(notifier, report, notify_on):
            log.debug("notify: %s skipped (NOTIFY_ON=%s, run succeeded)", name, notify_on)
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


def ping_start(config: NotifyConfig, delivery: Delivery | None = None) -> bool:
    """Send the healthchecks ``/start`` ping, if HEALTHCHECK_URL is set. Never raises.

    Returns False when the ping failed (it is logged); True when it was sent or not configured.
    """
    from backup.notify.healthchecks import from_config

    ok = True
    for notifier in from_config(config, delivery or Delivery.from_config(config)):
        try:
            notifier.ping_start()
        except NotificationFailed as err:
            ok = False
            log.error("notify: %s start ping failed: %s", notifier.name, err)
        except Exception as err:  # the run must go on without its start ping
            ok = False
            log.error("notify: %s start ping failed: %s", notifier.name, type(err).__name__)
        else:
            log.info("notify: %s start ping sent", notifier.name)
    return ok


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", 0)))
    except ValueError:
        return 0.0


__all__ = [
    "Delivery",
    "NotificationFailed",
    "Notifier",
    "RunReport",
    "build_notifiers",
    "ping_start",
    "post",
    "send_all",
]
