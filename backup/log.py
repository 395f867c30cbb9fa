"""Log lines for operators: text or JSON, with secrets and DSN credentials redacted.

``setup(config, secrets)`` installs one handler on the root logger. The redaction filter
replaces every known secret value and any ``user:password@`` in a URL, in every record,
including error text relayed from child processes. A ring buffer keeps the last lines for the
healthchecks ping body and failure reports.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus, unquote

REDACTED = "***"
MIN_SECRET_CHARS = 4
"""A secret shorter than this is not masked where it appears inside other text: a one-letter
password would turn every such letter of every line into ``***`` and say what it is. The
configuration should refuse such secrets; the patterns below still mask them in a URL or a
``password=`` pair."""
MIN_LINE_CHARS = 9
"""A line of a secret that spans lines (a key file) is masked on its own from this length (an
error may quote one line of it: "longer than 8 characters"); shorter lines are too common."""
MIN_BASE64_SECRET_CHARS = 8
"""A secret is also masked base64-encoded (inside an HTTP basic ``Authorization`` header, a
token) from this length: shorter ones would give cores of a few characters, common by chance."""
# postgresql://user:secret@host, https://user:secret@host: the password part goes. The scheme
# is bounded and must start where a scheme can (the look-behind): without that, a long run of
# letters is scanned again from each of its positions, quadratic in the line's length. The user
# and password stop at '/', so each '://' is followed at most to the next one: linear.
_URL_CREDENTIALS = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)"
    r"(?P<user>[^:/@\s]*):[^@/\s]*@"
)
# sig: an Azure SAS signature; accountkey: an Azure connection string's key; upload_id: a GCS
# resumable session (whoever has its URL may write the upload), in urllib3's DEBUG lines.
_KEYVALUE_SECRETS = re.compile(
    r"(?i)\b(password|passwd|secret|token|sig|accountkey|upload_id)=([^\s&;]+)"
)
_AGE_SECRET = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")
_TELEGRAM_TOKEN = re.compile(r"bot\d+:[A-Za-z0-9_-]{20,}")

# The attributes every LogRecord has; the others come from ``extra``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}

_tail: collections.deque[str] = collections.deque(maxlen=50)
_state: dict[str, object] = {"format": "text", "redactor": None}


def _escaped(text: str, quote: str, ascii_only: bool = False) -> str:
    """``text`` as Python's ``repr`` (or ``ascii``) writes it between ``quote`` characters."""
    out = []
    for char in text:
        code = ord(char)
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[char])
        elif char.isprintable() and (code < 0x80 or not ascii_only):
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _bytes_escaped(text: str, quote: str) -> str:
    """``text`` encoded as UTF-8, as Python's ``repr`` of ``bytes`` writes it."""
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def _base64_cores(data: bytes) -> set[str]:
    """The characters of ``data``'s base64 encoding that do not depend on what surrounds it,
    for each of its three possible alignments in a longer encoded text (``user:password``)."""
    cores = set()
    for offset in range(3):
        bits_from, bits_to = 8 * offset, 8 * (offset + len(data))
        first = -(-bits_from // 6)  # the first character made of the data's bits only
        last = bits_to // 6  # the characters before it are made of the data's bits only
        encoded = base64.b64encode(bytes(offset) + data).decode("ascii")
        for text in (encoded, encoded.replace("+", "-").replace("/", "_")):
            cores.add(text[first:last])
    return cores


def secret_forms(secret: str) -> set[str]:
    """Every form ``secret`` may take in an error text: as is; each of its lines of
    ``MIN_LINE_CHARS`` or more when it spans lines; each of those escaped as Python's
    ``repr``/``ascii`` of ``str`` or ``bytes`` and as JSON; percent-encoded or -decoded (URLs);
    base64-encoded (basic auth) from ``MIN_BASE64_SECRET_CHARS``."""
    pieces = {secret}
    if "\n" in secret or "\r" in secret:
        pieces |= {line.strip() for line in secret.splitlines()}
        pieces = {p for p in pieces if p == secret or len(p) >= MIN_LINE_CHARS}
    forms: set[str] = set()
    for piece in pieces:
        forms.add(piece)
        forms.add(unquote(piece))  # a URL's part, written decoded
        for mark in ("'", '"'):
            forms.add(_escaped(piece, mark))
            forms.add(_escaped(piece, mark, ascii_only=True))
            forms.add(_bytes_escaped(piece, mark))
        forms.add(json.dumps(piece)[1:-1])
        forms.add(json.dumps(piece, ensure_ascii=False)[1:-1])
        data = piece.encode("utf-8", "surrogatepass")
        for encoded in (quote(data, safe=""), quote(data), quote_plus(data)):
            forms.add(encoded)
            forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), encoded))
        if len(data) >= MIN_BASE64_SECRET_CHARS:
            forms |= _base64_cores(data)
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


class Redactor:
    """The one redaction of the job: log lines, the final error lines, reports, storage errors.

    Every occurrence of a known secret of at least ``MIN_SECRET_CHARS`` characters, in any of
    the forms an error text may show it (``secret_forms``: escaped, percent- or base64-encoded,
    one line of it; exact, case-sensitive matches, the longest first where two overlap) becomes
    ``***``; then the credentials of any URL, ``password=``/``token=`` values, age identities and
    Telegram bot tokens. Nothing else in the text changes. Linear in the text's length.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(
            sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        )
        # Longest first so a secret containing another is removed whole.
        forms = sorted(
            {form for s in self.secrets for form in secret_forms(s)}, key=len, reverse=True
        )
        self._exact = re.compile("|".join(re.escape(f) for f in forms)) if forms else None

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """This redactor with more secrets (a backend's own keys)."""
        return Redactor((*self.secrets, *secrets))

    def redact(self, text: str) -> str:
        if self._exact is not None:
            text = self._exact.sub(REDACTED, text)
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
        text = _KEYVALUE_SECRETS.sub(lambda m: f"{m[1]}={REDACTED}", text)
        text = _AGE_SECRET.sub(REDACTED, text)
        return _TELEGRAM_TOKEN.sub(f"bot{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) through a ``Redactor``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor(secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.redactor.secrets

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.msg = self.redact(message)
        record.args = None
        for key, value in vars(record).items():  # the facts passed as ``extra`` (JSON lines)
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime  # type: ignore[assignment]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the ``extra`` facts."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
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
    logging.captureWarnings(True)  # a library's warning is a log line too (JSON when asked)
    _state["format"] = format
    _state["redactor"] = redactor
    # Libraries' own chatter is not for operators unless debugging.
    for noisy in ("botocore", "boto3", "urllib3", "b2sdk", "s3transfer", "google", "azure"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return redactor


def tail_lines(count: int = 20) -> list[str]:
    """The last ``count`` log lines (already redacted)."""
    return list(_tail)[-count:]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the secrets the log knows (``setup``) nor ``secrets``: for text that
    leaves the job outside logging (the final error lines, reports, a storage error)."""
    installed = _state["redactor"]
    redactor = installed.redactor if isinstance(installed, RedactingFilter) else Redactor()
    return redactor.with_secrets(secrets).redact(text) if secrets else redactor.redact(text)


def current_format() -> str:
    return str(_state["format"])
