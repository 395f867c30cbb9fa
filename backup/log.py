"""Log lines for operators: text or JSON, with secrets and DSN credentials redacted.

``setup(config, secrets)`` installs one handler on the root logger. The redaction filter
replaces every known secret value and any ``user:password@`` in a URL, in every record,
including error text relayed from child processes. A ring buffer keeps the last lines for the
healthchecks ping body and failure reports.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime

REDACTED = "***"
# postgresql://user:secret@host, https://user:secret@host: the password part goes.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@"
)
_KEYVALUE_SECRETS = re.compile(r"(?i)\b(password|passwd|secret|token)=([^\s&]+)")
_AGE_SECRET = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")
_TELEGRAM_TOKEN = re.compile(r"bot\d+:[A-Za-z0-9_-]{20,}")

_tail: collections.deque[str] = collections.deque(maxlen=50)
_state: dict[str, object] = {"format": "text", "redactor": None}


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with every secret removed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first so a secret containing another is removed whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
        text = _KEYVALUE_SECRETS.sub(lambda m: f"{m[1]}={REDACTED}", text)
        text = _AGE_SECRET.sub(REDACTED, text)
        return _TELEGRAM_TOKEN.sub(f"bot{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.msg = self.redact(message)
        record.args = None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime  # type: ignore[assignment]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the ``extra`` facts."""

    _standard = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._standard and not key.startswith("_"):
                line[key] = value
        if record.exc_text:
            line["traceback"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class _TailHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _tail.append(self.format(record))


def setup(
    format: str = "text", level: str = "INFO", secrets: Iterable[str] = ()
) -> RedactingFilter:
    """Configure the root logger once; safe to call again (replaces our handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_pgbackup", False):
            root.removeHandler(handler)
    redactor = RedactingFilter(secrets)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    tail = _TailHandler()
    tail.setFormatter(TextFormatter())
    for handler in (stream, tail):
        handler.addFilter(redactor)
        handler._pgbackup = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    _state["format"] = format
    _state["redactor"] = redactor
    # Libraries' own chatter is not for operators unless debugging.
    for noisy in ("botocore", "boto3", "urllib3", "b2sdk", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return redactor


def tail_lines(count: int = 20) -> list[str]:
    """The last ``count`` log lines (already redacted)."""
    return list(_tail)[-count:]


def redact(text: str) -> str:
    """Remove secrets from text printed outside logging (the final error lines)."""
    redactor = _state["redactor"]
    return redactor.redact(text) if isinstance(redactor, RedactingFilter) else text


def current_format() -> str:
    return str(_state["format"])
