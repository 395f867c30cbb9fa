"""The human message every channel shares: the text of a run report, as Telegram HTML or as
plain text (webhooks' ``text`` and ``content`` fields).

``format_message(report, html=True)`` escapes every value, so database names with ``_``, ``*``,
``<`` or ``&`` never break the markup. The layout follows the runbook's messages: date, size in
MB, storage and retention on success; date, the error, the hint and the manual command on
failure; a line more once failures in a row reach ALERT_AFTER_FAILURES.
"""

from __future__ import annotations

import html as html_lib
from datetime import UTC, datetime

from backup.outcome import DatabaseResult, RunReport

# https://core.telegram.org/bots/api#sendmessage: "1-4096 characters after entities parsing".
TELEGRAM_MAX_CHARS = 4096
MAX_ERROR_CHARS = 500
MAX_DATABASE_LINES = 30
BYTES_PER_MB = 1_000_000

PROVIDERS = {"b2": "Backblaze B2", "s3": "S3", "file": "local directory"}

TITLES = {
    "success": "✅ PostgreSQL {command} succeeded",
    "partial": "⚠️ PostgreSQL {command} partly failed",
    "failure": "❌ PostgreSQL {command} failed",
}
DATABASE_ICONS = {"success": "✅", "partial": "⚠️", "failure": "❌"}


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 102nd, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def format_time(moment: datetime) -> str:
    """``2025-11-10 03:00:15 UTC``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_size(size_bytes: int) -> str:
    """``2.34 MB`` (MB = 10^6 bytes); a non-empty backup never shows as ``0.00 MB``."""
    if 0 < size_bytes < BYTES_PER_MB / 100:
        return "< 0.01 MB"
    return f"{size_bytes / BYTES_PER_MB:.2f} MB"


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def describe_destination(url: str) -> str:
    """``Backblaze B2 (b2://bucket/prefix)``; destination URLs never hold credentials."""
    scheme = url.partition("://")[0].lower()
    provider = PROVIDERS.get(scheme)
    return f"{provider} ({url})" if provider else url


def escalation_line(report: RunReport) -> str:
    """``2nd failure in a row: no successful backup since <time>`` (or ``never a ...``)."""
    count = ordinal(report.consecutive_failures)
    if report.last_success_at is None:
        return f"{count} failure in a row: never a successful {report.command}"
    since = format_time(report.last_success_at)
    return f"{count} failure in a row: no successful {report.command} since {since}"


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Markup:
    """Escaping and emphasis for HTML, or nothing at all for plain text."""

    def __init__(self, html: bool) -> None:
        self.html = html

    def esc(self, text: object) -> str:
        return html_lib.escape(str(text), quote=False) if self.html else str(text)

    def bold(self, text: str) -> str:
        return f"<b>{self.esc(text)}</b>" if self.html else text

    def code(self, text: str) -> str:
        return f"<code>{self.esc(text)}</code>" if self.html else text


def _failed_destinations(report: RunReport) -> dict[str, tuple[str | None, list[str]]]:
    """Destination URL -> (its first error, the databases that did not reach it)."""
    failed: dict[str, tuple[str | None, list[str]]] = {}
    for result in report.results:
        for dest in result.destinations:
            if not dest.ok:
                failed.setdefault(dest.url, (dest.error, []))[1].append(result.database)
    return failed


def _database_line(result: DatabaseResult, m: _Markup) -> str:
    icon = DATABASE_ICONS.get(result.status, "•")
    parts = [result.name] if result.name else []
    if result.status != "failure":
        parts.append(format_size(result.size_bytes))
    if result.status != "success" and result.error:
        parts.append(clip(result.error, 200))
    details = ", ".join(m.esc(part) for part in parts if part)
    return f"{icon} {m.esc(result.database)}" + (f": {details}" if details else "")


def _database_lines(report: RunReport, m: _Markup, max_lines: int) -> list[str]:
    results = report.results
    if len(results) == 1:
        lines = [f"🗄️ Database: {m.esc(results[0].database)}"]
        if results[0].name:
            lines.append(f"📦 Backup: {m.esc(results[0].name)}")
        return lines
    if not results:
        return []
    lines = [f"🗄️ Databases ({len(results)}):"]
    lines += [_database_line(r, m) for r in results[:max_lines]]
    if len(results) > max_lines:
        lines.append(f"… and {len(results) - max_lines} more")
    return lines


def format_message(report: RunReport, *, html: bool = True) -> str:
    """The human message for ``report``: Telegram HTML, or plain text with ``html=False``.

    Stays under Telegram's 4,096 characters: with many databases, fewer are listed one by one.
    """
    text = ""
    for max_lines in (MAX_DATABASE_LINES, 10, 0):
        text = _render(report, _Markup(html), max_lines)
        if len(text) <= TELEGRAM_MAX_CHARS:
            return text
    return text[: TELEGRAM_MAX_CHARS - 1] + "…"


def _render(report: RunReport, m: _Markup, max_lines: int) -> str:
    title = TITLES.get(report.status, TITLES["failure"]).format(command=report.command)
    lines = [m.bold(title), ""]
    lines.append(f"📅 Date: {format_time(report.finished_at)}")
    lines.append(f"🖥️ Server: {m.esc(report.host)}")
    lines += _database_lines(report, m, max_lines)
    if report.status != "failure":
        lines.append(f"💾 Size: {format_size(report.size_bytes)}")
    lines.append(f"⏱️ Duration: {format_duration(report.duration_s)}")

    failed = _failed_destinations(report)
    stored = [url for url in report.destinations if url not in failed]
    if stored:
        label = "Storage" if not failed else "Stored in"
        lines.append(f"☁️ {label}: " + ", ".join(m.esc(describe_destination(u)) for u in stored))
    if report.status != "failure":
        for url, (error, databases) in failed.items():
            which = f" ({m.esc(', '.join(databases))})" if len(report.results) > 1 else ""
            reason = f": {m.esc(clip(error, 200))}" if error else ""
            lines.append(f"❌ Not stored in {m.esc(describe_destination(url))}{which}{reason}")
    if report.status == "success":
        days = report.retention_days
        lines.append(f"🔄 Retention: {days} day{'s' if days != 1 else ''}")
        return "\n".join(lines)

    error = report.error or next((r.error for r in report.results if r.error), None)
    if error and report.status == "failure":
        lines.append(f"⚠️ Error: {m.esc(clip(error))}")
    hint = report.hint or next((r.hint for r in report.results if r.hint), None)
    if hint:
        lines.append(f"💡 Hint: {m.esc(clip(hint))}")
    if report.escalated:
        lines.append(f"🚨 {m.esc(escalation_line(report))}")
    lines += ["", "Manual command:", m.code(report.manual_command)]
    return "\n".join(lines)
