"""The human message every channel shares: the text of a run report, as Telegram HTML or as
plain text (webhooks' ``text`` and ``content`` fields), in the language and time zone of
``Wording`` (NOTIFY_LANGUAGE, NOTIFY_TIMEZONE, NOTIFY_MENTION).

``format_message(report, html=True, wording=...)`` escapes every value, so database names with
``_``, ``*``, ``<`` or ``&`` never break the markup. The words are in ``backup/languages/``; this
module only lays them out. The layout follows the runbook's messages: date, size in MB, storage
and retention on success; date, the error, the hint, "action required" and the manual command on
failure. ``event(report)`` names which message a report is:

- ``success``, ``partial``, ``failure``: one message per run, as the runbook sends;
- ``escalation``: a failure once the failures in a row reach ALERT_AFTER_FAILURES (and every
  failure after it until a success): its own title, how long without a successful backup, and
  NOTIFY_MENTION in front;
- ``recovery``: the first success after failures in a row, sent even with NOTIFY_ON=failure
  (it closes the alert people received).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from backup import languages
from backup.job.outcome import DatabaseResult, RunReport, VerifyOutcome
from backup.languages import Language

if TYPE_CHECKING:
    from backup.config import NotifyConfig

# https://core.telegram.org/bots/api#sendmessage: "1-4096 characters after entities parsing".
TELEGRAM_MAX_CHARS = 4096
MAX_ERROR_CHARS = 500
MAX_DATABASE_LINES = 30
BYTES_PER_MB = 1_000_000

# "file" is a word of each language; the others are the services' own names.
PROVIDERS = {
    "b2": "Backblaze B2",
    "s3": "S3",
    "gs": "Google Cloud Storage",
    "az": "Azure Blob Storage",
    "azure": "Azure Blob Storage",
}
DATABASE_ICONS = {"success": "✅", "partial": "⚠️", "failure": "❌"}
COMMANDS_WITH_TITLES = ("backup", "verify", "prune", "status")


@dataclass(frozen=True)
class Wording:
    """How messages are written for the people who read them."""

    language: str = languages.DEFAULT
    timezone: str = "UTC"  # an IANA name, checked by the configuration
    mention: str | None = None  # put in front of escalations: "@alice", "<!channel>"

    @classmethod
    def from_config(cls, config: NotifyConfig) -> Wording:
        return cls(config.language, config.timezone, config.mention)

    @property
    def words(self) -> Language:
        return languages.language(self.language)


def event(report: RunReport) -> str:
    """``success``, ``partial``, ``failure``, ``escalation`` or ``recovery``."""
    if report.escalated:
        return "escalation"
    if report.recovered:
        return "recovery"
    return report.status


def format_time(moment: datetime, timezone: str = "UTC") -> str:
    """``2025-11-10 04:00:15 CET`` in ``timezone`` (its abbreviation, else its offset); a naive
    datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.strftime("%Z") or local.strftime("%z"))


def format_size(size_bytes: int) -> str:
    """``2.34 MB`` (MB = 10^6 bytes) in every language, as the runbook writes it; a non-empty
    backup never shows as ``0.00 MB``."""
    if 0 < size_bytes < BYTES_PER_MB / 100:
        return "< 0.01 MB"
    return f"{size_bytes / BYTES_PER_MB:.2f} MB"


def format_duration(seconds: float) -> str:
    """``15.4 s``, ``2 min 05 s``, ``1 h 02 min``: SI symbols, the same in every language."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def format_age(seconds: float, words: Language) -> str:
    """A rough length of time in words: ``45 minutes``, ``5 hours``, ``3 days``."""
    minutes = max(0, round(seconds / 60))
    if minutes < 60:
        return words.count("minutes", minutes)
    hours = round(seconds / 3600)
    if hours < 48:
        return words.count("hours", hours)
    return words.count("days", round(seconds / 86_400))


def describe_destination(url: str, words: Language | None = None) -> str:
    """``Backblaze B2 (b2://bucket/prefix)``; destination URLs never hold credentials."""
    scheme = url.partition("://")[0].lower()
    provider = PROVIDERS.get(scheme)
    if scheme == "file":
        provider = (words or languages.language(languages.DEFAULT)).text("provider.file")
    return f"{provider} ({url})" if provider else url


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Markup:
    """Escaping and emphasis for HTML, or nothing at all for plain text."""

    def __init__(self, html: bool) -> None:
        self.html = html

    def esc(self, text: object) -> str:
        if not self.html:
            return str(text)
        import html  # Telegram's HTML only: html.entities is 0.4 MiB every other run would keep

        return html.escape(str(text), quote=False)

    def bold(self, text: str) -> str:
        return f"<b>{self.esc(text)}</b>" if self.html else text

    def code(self, text: str) -> str:
        return f"<code>{self.esc(text)}</code>" if self.html else text


class _Writer:
    """One report's lines: the words of its language, its markup, its time zone."""

    def __init__(self, report: RunReport, wording: Wording, html: bool) -> None:
        self.report = report
        self.wording = wording
        self.words = wording.words
        self.m = _Markup(html)

    def line(self, key: str, **values: object) -> str:
        """The template ``key`` with every value escaped for the markup."""
        return self.words.text(key, **{k: self.m.esc(v) for k, v in values.items()})

    def time(self, moment: datetime) -> str:
        return format_time(moment, self.wording.timezone)

    def destination(self, url: str) -> str:
        return describe_destination(url, self.words)

    def title(self) -> str:
        report, words = self.report, self.words
        command = report.command if report.command in COMMANDS_WITH_TITLES else "other"
        if report.escalated and f"title.{command}.escalation" in words.words:
            return words.text(
                f"title.{command}.escalation", ordinal=words.ordinal(report.consecutive_failures)
            )
        if report.recovered and f"title.{command}.recovery" in words.words:
            failures = words.count("failures", report.previous_failures)
            return words.text(f"title.{command}.recovery", failures=failures)
        status = report.status if report.status in DATABASE_ICONS else "failure"
        key = f"title.{command}.{status}"
        if key not in words.words:
            key = f"title.other.{status}"
        return words.text(key, command=report.command)


def _failed_destinations(report: RunReport) -> dict[str, tuple[str | None, list[str]]]:
    """Destination URL -> (its first error, the databases that did not reach it)."""
    failed: dict[str, tuple[str | None, list[str]]] = {}
    for result in report.results:
        for dest in result.destinations:
            if not dest.ok:
                failed.setdefault(dest.url, (dest.error, []))[1].append(result.database)
    return failed


def _database_line(result: DatabaseResult, w: _Writer) -> str:
    icon = DATABASE_ICONS.get(result.status, "•")
    parts = [result.name] if result.name else []
    if result.status != "failure":
        parts.append(format_size(result.size_bytes))
    if result.status != "success" and result.error:
        parts.append(clip(result.error, 200))
    details = ", ".join(w.m.esc(part) for part in parts if part)
    return f"{icon} {w.m.esc(result.database)}" + (f": {details}" if details else "")


def _database_lines(w: _Writer, max_lines: int) -> list[str]:
    results = w.report.results
    if len(results) == 1:
        lines = [w.line("line.database", database=results[0].database)]
        if results[0].name:
            lines.append(w.line("line.backup", name=results[0].name))
        return lines
    if not results:
        return []
    lines = [w.line("line.databases", count=len(results))]
    lines += [_database_line(r, w) for r in results[:max_lines]]
    if len(results) > max_lines:
        lines.append(w.line("line.more", count=len(results) - max_lines))
    return lines


def _verify_lines(verify: VerifyOutcome, w: _Writer, passed: bool) -> list[str]:
    words = w.words
    lines = [
        w.line("line.database", database=verify.database),
        w.line("line.backup", name=verify.name),
        w.line("line.storage", destinations=w.destination(verify.destination)),
    ]
    if not passed:
        return lines
    lines.append(w.line("line.size", size=format_size(verify.size_bytes)))
    lines.append(w.line("line.verified", tables=words.count("tables", verify.tables)))
    if not verify.restore_test:
        lines.append(w.line("line.restore_test_skipped"))
        return lines
    checked = {
        "tables": words.count("tables_checked", verify.tables_checked),
        "rows": words.count("row_counts", verify.row_counts_checked),
    }
    if verify.restore_seconds is None:
        lines.append(w.line("line.restore_test_untimed", **checked))
    else:
        duration = format_duration(verify.restore_seconds)
        lines.append(w.line("line.restore_test", duration=duration, **checked))
    return lines


def _since_last_success(w: _Writer) -> str:
    report = w.report
    if report.last_success_at is None:
        return w.line("line.no_success_ever")
    age = format_age((report.finished_at - report.last_success_at).total_seconds(), w.words)
    return w.line("line.no_success_since", date=w.time(report.last_success_at), age=age)


def _previous_success(w: _Writer) -> str:
    report = w.report
    if report.last_success_at is None:
        return w.line("line.first_success")
    age = format_age((report.finished_at - report.last_success_at).total_seconds(), w.words)
    return w.line("line.previous_success", date=w.time(report.last_success_at), age=age)


def format_message(report: RunReport, *, html: bool = True, wording: Wording | None = None) -> str:
    """The human message for ``report``: Telegram HTML, or plain text with ``html=False``.

    Stays under Telegram's 4,096 characters: with many databases, fewer are listed one by one.
    """
    writer = _Writer(report, wording or Wording(), html)
    text = ""
    for max_lines in (MAX_DATABASE_LINES, 10, 0):
        text = _render(writer, max_lines)
        if len(text) <= TELEGRAM_MAX_CHARS:
            return text
    return text[: TELEGRAM_MAX_CHARS - 1] + "…"


def _render(w: _Writer, max_lines: int) -> str:
    report, m = w.report, w.m
    title = m.bold(w.title())
    if report.escalated and w.wording.mention:
        title = f"{m.esc(w.wording.mention)} {title}"
    lines = [title, ""]
    lines.append(w.line("line.date", date=w.time(report.finished_at)))
    lines.append(w.line("line.server", host=report.host))
    if report.verify is not None:
        lines += _verify_lines(report.verify, w, passed=report.status == "success")
    else:
        lines += _database_lines(w, max_lines)
        if report.status != "failure" and report.results:
            lines.append(w.line("line.size", size=format_size(report.size_bytes)))
    lines.append(w.line("line.duration", duration=format_duration(report.duration_s)))

    failed = _failed_destinations(report)
    stored = [url for url in report.destinations if url not in failed]
    if stored:
        key = "line.storage" if not failed else "line.stored_in"
        lines.append(w.line(key, destinations=", ".join(w.destination(u) for u in stored)))
    if report.status != "failure":
        for url, (error, databases) in failed.items():
            where = w.destination(url)
            if len(report.results) > 1:
                where += f" ({', '.join(databases)})"
            if error:
                lines.append(
                    w.line("line.not_stored_because", destination=where, error=clip(error, 200))
                )
            else:
                lines.append(w.line("line.not_stored", destination=where))
    if report.status == "success":
        if report.command == "backup":
            days = w.words.count("days", report.retention_days)
            lines.append(w.line("line.retention", days=days))
        if report.recovered:
            lines.append(_previous_success(w))
        return "\n".join(lines)

    error = report.error or next((r.error for r in report.results if r.error), None)
    if error and report.status == "failure":
        lines.append(w.line("line.error", error=clip(error)))
    hint = report.hint or next((r.hint for r in report.results if r.hint), None)
    if hint:
        lines.append(w.line("line.hint", hint=clip(hint)))
    if report.escalated:
        lines.append(_since_last_success(w))
    lines.append(w.line("line.action"))
    lines += ["", w.line("line.manual"), m.code(report.manual_command)]
    return "\n".join(lines)
