"""Telegram notifications: ``sendMessage`` to one chat, with the shared message as HTML.

A routine success (not a recovery) is sent with ``disable_notification``: it lands in the chat
without a sound, so that the phone rings for what needs someone (failures, escalations, the
recovery that ends them) and a daily buzz does not teach people to ignore the bot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from backup.job.outcome import RunReport
from backup.log import redact
from backup.notify.base import Notifier
from backup.notify.http import Delivery, NotificationFailed, check_status, post
from backup.notify.message import Wording, clip, event, format_message

if TYPE_CHECKING:
    import requests

    from backup.config import NotifyConfig, Secret


class TelegramNotifier(Notifier):
    """``sendMessage`` to one chat with the bot token; Telegram's ``ok: false`` is a failure."""

    name = "telegram"

    def __init__(
        self,
        token: Secret,
        chat_id: str,
        api_url: str,
        delivery: Delivery | None = None,
        wording: Wording | None = None,
    ) -> None:
        self._token = token
        self.chat_id = chat_id
        self.api_url = api_url.rstrip("/")
        self.delivery = delivery or Delivery()
        self.wording = wording or Wording()

    def payload(self, report: RunReport) -> dict[str, object]:
        return {
            "chat_id": self.chat_id,
            "text": format_message(report, html=True, wording=self.wording),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
            "disable_notification": event(report) == "success",
        }

    def send(self, report: RunReport) -> None:
        post(
            f"{self.api_url}/bot{self._token.reveal()}/sendMessage",
            label=self.name,
            delivery=self.delivery,
            check=self._check,
            json=self.payload(report),
        )

    @property
    def _check(self) -> Callable[[requests.Response, str], None]:
        token = self._token.reveal()

        def check(response: requests.Response, label: str) -> None:
            try:
                answer = response.json()
            except ValueError:
                check_status(response, label)
                raise NotificationFailed(f"{label}: the answer is not JSON") from None
            if isinstance(answer, dict) and answer.get("ok") is True:
                return
            answer = answer if isinstance(answer, dict) else {}
            code = answer.get("error_code") or response.status_code
            description = str(answer.get("description") or f"HTTP {response.status_code}")
            # Telegram never echoes the token, but a proxy in between might.
            description = clip(redact(description, (token,)), 300)
            parameters = answer.get("parameters")
            retry_after = parameters.get("retry_after", 0) if isinstance(parameters, dict) else 0
            raise NotificationFailed(
                f"{label}: {description}",
                retryable=isinstance(code, int) and (code == 429 or code >= 500),
                retry_after_s=float(retry_after) if isinstance(retry_after, int | float) else 0.0,
            )

        return check


def from_config(config: NotifyConfig, delivery: Delivery | None = None) -> list[TelegramNotifier]:
    """One notifier when TELEGRAM_BOT_TOKEN and a chat id are set, else none."""
    if not (config.telegram_bot_token and config.telegram_chat_id):
        return []
    return [
        TelegramNotifier(
            config.telegram_bot_token,
            config.telegram_chat_id,
            config.telegram_api_url,
            delivery or Delivery.from_config(config),
            Wording.from_config(config),
        )
    ]
