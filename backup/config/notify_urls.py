"""NOTIFY_URLS: apprise URLs (Slack, Discord, ntfy, email, ...), one per notification target.

- ``split(value)``: the entries of the variable, separated by spaces or new lines, or by a comma
  or semicolon where the next entry starts with a scheme (``name://``): a comma inside an entry
  (``mailto://...?to=a@example.com,b@example.com``) stays in it. A URL never holds a raw space,
  so ``json://host/x, oops`` is two entries, the second refused, rather than one odd URL.
- ``problem(url)``: why apprise refuses an entry, or ``None``; the message names the scheme
  only, never the URL (apprise URLs hold tokens and passwords).
- ``secret_parts(url)``: the pieces of an entry that may be secrets, for the log redaction.
- ``load_apprise()``: apprise, imported on first use only (about 0.5 s and 30 MB with its
  plugins: a job without NOTIFY_URLS never pays it), its own log kept out of the job's log.
- ``apprise_log()``: what apprise logged at WARNING and above while the block ran.

apprise's own log lines are never shown: at DEBUG they print the URLs it sends to, tokens
included, and its errors print URLs half masked. Its warnings are collected by ``apprise_log``
and the caller words them (redacted) into its own line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from urllib.parse import unquote

from backup.log import Redactor

APPRISE_LOGGER = "apprise"
WIKI = "https://github.com/caronc/apprise/wiki"
SCHEME = re.compile(r"([a-z0-9]{1,32})://", re.IGNORECASE)
"""A scheme as apprise reads one (apprise.utils.parse.URL_DETAILS_RE)."""
_SEPARATOR = re.compile(r"[,;]+(?=[a-z0-9]{1,32}://)", re.IGNORECASE)
_PIECES = re.compile(r"[/:@?&=#,;\s]+")
_QUERY_NAME = re.compile(r"(?<=[?&])[^=&#]*=")
MIN_SECRET_PART_CHARS = 8
"""A piece of an entry this long and without a dot (tokens, topics, webhook ids; not host names
nor email domains) is masked in the log wherever it appears."""
MAX_REASON_CHARS = 200


def split(value: str) -> list[str]:
    """The entries of NOTIFY_URLS (see the module docstring for the rule)."""
    entries = []
    for chunk in value.split():
        entries += [entry.strip(",;") for entry in _SEPARATOR.split(chunk)]
    return [entry for entry in entries if entry]


def scheme(url: str) -> str | None:
    """The entry's scheme, lower case (safe to show), or ``None`` when it has none."""
    match = SCHEME.match(url)
    return match.group(1).lower() if match else None


def secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` the log masks beside the whole entry: the password of its
    ``user:password@``, and every piece of 8+ characters without a dot (apprise URLs carry
    their tokens as host, path or query parts: ``slack://TokenA/TokenB/TokenC``)."""
    rest = url.split("://", 1)[-1]
    parts = []
    userinfo, at, _ = rest.partition("@")
    if at and ":" in userinfo and "/" not in userinfo:
        parts.append(userinfo.split(":", 1)[1])
    # The query's names (priority=, format=) are apprise's words, not secrets; its values may be.
    rest = _QUERY_NAME.sub("", rest)
    for piece in _PIECES.split(rest):
        for form in {piece, unquote(piece)}:
            if len(form) >= MIN_SECRET_PART_CHARS and "." not in form:
                parts.append(form)
    return [part for part in dict.fromkeys(parts) if part]


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed record must not break a notification
            self.messages.append(record.levelname)


def load_apprise() -> ModuleType:
    """apprise, imported now; its log goes nowhere but to ``apprise_log`` collectors."""
    import apprise

    logger = logging.getLogger(APPRISE_LOGGER)
    if logger.propagate:
        logger.propagate = False
        logger.addHandler(logging.NullHandler())  # not Python's last-resort handler either
        logger.setLevel(logging.WARNING)
    return apprise


@contextmanager
def apprise_log() -> Iterator[list[str]]:
    """The messages apprise logs at WARNING and above (from any thread) inside the block."""
    collector = _Collector()
    logger = logging.getLogger(APPRISE_LOGGER)
    logger.addHandler(collector)
    try:
        yield collector.messages
    finally:
        logger.removeHandler(collector)


def reason(messages: list[str], secrets: list[str]) -> str | None:
    """The last of apprise's messages that names no URL, on one line, without ``secrets``."""
    for message in reversed(messages):
        if "://" in message:  # apprise's URLs are half masked at best: never relayed
            continue
        text = Redactor(secrets).redact(" ".join(message.split()))
        if text:
            return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
    return None


def problem(url: str) -> str | None:
    """Why apprise refuses ``url`` (a phrase naming its scheme, never the URL), or ``None``."""
    name = scheme(url)
    if name is None:
        return "does not start with a scheme (slack://, ntfy://, mailto://, ...)"
    if url.rstrip("/") == f"{url[: len(name)]}:":  # nothing else: showing the scheme shows it all
        return "is a scheme alone, with nothing after it"
    apprise = load_apprise()
    with apprise_log() as messages:
        try:
            plugin = apprise.Apprise.instantiate(url)
        except Exception:  # a plugin's own bug on an odd URL: refused like any other
            plugin = None
    if plugin is not None:
        return None
    if name not in apprise.NotificationManager():
        return f"({name}://) is not a scheme apprise knows: see {WIKI}"
    why = reason(messages, [url, *secret_parts(url)])
    detail = f": {why}" if why else ""
    return f"({name}://) is not a URL apprise accepts{detail}; see {WIKI}"
