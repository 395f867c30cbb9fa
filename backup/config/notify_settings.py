"""Notification settings: Telegram, webhooks, healthchecks, NOTIFY_URLS (apprise), and how
messages are worded (NOTIFY_LANGUAGE, NOTIFY_TIMEZONE, NOTIFY_MENTION)."""

from __future__ import annotations

import re

from backup import languages
from backup.config import notify_urls, syntax
from backup.config.model import MAX_COUNT, NotifyConfig, Secret
from backup.config.reader import Reader

# NOTIFY_MENTION: a few names or a channel keyword, not a message.
MAX_MENTION_CHARS = 200
TELEGRAM_CHAT = re.compile(r"-?[0-9]{1,20}|@[A-Za-z0-9_]{4,64}")


def read_notify(r: Reader) -> NotifyConfig:
    token = r.secret("TELEGRAM_BOT_TOKEN")
    chat = r.check("TELEGRAM_CHAT_ID", r.str("TELEGRAM_CHAT_ID"), _chat_problem) or r.check(
        "ADMIN_USER_ID", r.str("ADMIN_USER_ID"), _chat_problem
    )
    if (
        token
        and not chat
        and not any(p.startswith(("TELEGRAM_CHAT_ID", "ADMIN_USER_ID")) for p in r.problems)
    ):
        r.problems.append("TELEGRAM_BOT_TOKEN is set but ADMIN_USER_ID / TELEGRAM_CHAT_ID is not")
    webhooks = r.secret("NOTIFY_WEBHOOK_URL")
    webhook_urls = tuple(
        Secret(u.strip()) for u in (webhooks.reveal() if webhooks else "").split(",") if u.strip()
    )
    healthcheck = r.secret("HEALTHCHECK_URL")
    apprise_urls = _apprise_urls(r, r.secret("NOTIFY_URLS"))
    api_url = r.str("TELEGRAM_API_URL", "https://api.telegram.org") or ""
    for name, value, secret in (
        ("TELEGRAM_API_URL", api_url, False),
        ("HEALTHCHECK_URL", healthcheck.reveal() if healthcheck else "", True),
        *(("NOTIFY_WEBHOOK_URL", u.reveal(), True) for u in webhook_urls),
    ):
        if value:
            _, problem = syntax.url_problem(value, ("http", "https"), secret=secret)
            if problem:
                r.problems.append(f"{name} {problem}")
    return NotifyConfig(
        telegram_bot_token=token,
        telegram_chat_id=chat,
        telegram_api_url=api_url.rstrip("/"),
        webhook_urls=webhook_urls,
        healthcheck_url=healthcheck,
        apprise_urls=apprise_urls,
        notify_on=r.choice("NOTIFY_ON", "always", ("always", "failure")),
        alert_after_failures=r.int("ALERT_AFTER_FAILURES", 2, 1, MAX_COUNT) or 2,
        timeout_s=r.float("NOTIFY_TIMEOUT_SECONDS", 10.0, 0.1, 600.0),
        language=r.choice("NOTIFY_LANGUAGE", languages.DEFAULT, languages.AVAILABLE),
        timezone=_timezone(r),
        mention=r.str("NOTIFY_MENTION", max_chars=MAX_MENTION_CHARS),
    )


def _timezone(r: Reader) -> str:
    """NOTIFY_TIMEZONE; UTC when unset or refused."""
    value = r.str("NOTIFY_TIMEZONE")
    problem = syntax.timezone_problem(value) if value else None
    if problem:
        r.problems.append(f"NOTIFY_TIMEZONE={syntax.shown(value or '')} {problem}")
    return value if value and not problem else "UTC"


def _apprise_urls(r: Reader, value: Secret | None) -> tuple[Secret, ...]:
    """The NOTIFY_URLS entries apprise accepts; each refused one is a problem naming its
    position and scheme, never the URL. apprise is imported only when the variable is set."""
    if not value:
        return ()
    try:
        notify_urls.load_apprise()
    except ImportError:
        r.problems.append("NOTIFY_URLS needs the apprise package: pip install 'apprise>=2.0'")
        return ()
    accepted = []
    for index, url in enumerate(notify_urls.split(value.reveal()), start=1):
        problem = notify_urls.problem(url)
        if problem:
            r.problems.append(f"NOTIFY_URLS entry {index} {problem}")
            r.hints.append(
                "NOTIFY_URLS: apprise URLs separated by spaces or new lines (a comma only "
                "before the next scheme://); try one with: apprise -vvv -t test -b test 'URL'"
            )
        else:
            accepted.append(Secret(url))
    return tuple(accepted)


def _chat_problem(value: str) -> str | None:
    if TELEGRAM_CHAT.fullmatch(value):
        return None
    return f"={syntax.shown(value)} is not a Telegram chat (a number, or @channelname)"
