"""One notification request over HTTP: a POST with a timeout and a bounded retry.

``post(...)`` retries (tenacity, exponential backoff) on connection errors, 5xx and 429 only; a
4xx is a permanent error and is not resent. Notifier URLs embed secrets (the bot token, a
webhook's path, a healthcheck's UUID): messages name a target by its ``label`` or ``safe_host``,
never by its URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

if TYPE_CHECKING:
    import requests

    from backup.config import NotifyConfig

log = logging.getLogger(__name__)


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

    import requests  # only when a notification is sent: a run without channels never loads it

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


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", 0)))
    except ValueError:
        return 0.0
