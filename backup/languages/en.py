"""English: the reference language. Every other language has exactly these keys, with the same
placeholders in each template (see ``__init__.py``)."""

from __future__ import annotations

# CLDR plural categories this language uses (see __init__.py)
PLURALS = ("one", "other")


def plural(n: int) -> str:
    return "one" if n == 1 else "other"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 102nd, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


WORDS: dict[str, str] = {
    # Titles, per command and outcome; "other" is any command without titles of its own.
    "title.backup.success": "✅ PostgreSQL backup succeeded",
    "title.backup.partial": "⚠️ PostgreSQL backup partly failed",
    "title.backup.failure": "❌ PostgreSQL backup failed",
    "title.backup.escalation": "🚨 PostgreSQL backup: {ordinal} failure in a row",
    "title.backup.recovery": "✅ PostgreSQL backup recovered after {failures}",
    "title.verify.success": "✅ PostgreSQL verify succeeded",
    "title.verify.failure": "❌ PostgreSQL verify failed",
    "title.prune.failure": "❌ PostgreSQL prune failed",
    "title.status.failure": "❌ PostgreSQL status failed",
    "title.other.success": "✅ PostgreSQL {command} succeeded",
    "title.other.partial": "⚠️ PostgreSQL {command} partly failed",
    "title.other.failure": "❌ PostgreSQL {command} failed",
    # The lines of a report.
    "line.date": "📅 Date: {date}",
    "line.server": "🖥️ Server: {host}",
    "line.database": "🗄️ Database: {database}",
    "line.databases": "🗄️ Databases ({count}):",
    "line.more": "… and {count} more",
    "line.backup": "📦 Backup: {name}",
    "line.size": "💾 Size: {size}",
    "line.duration": "⏱️ Duration: {duration}",
    "line.storage": "☁️ Storage: {destinations}",
    "line.stored_in": "☁️ Stored in: {destinations}",
    "line.not_stored": "❌ Not stored in {destination}",
    "line.not_stored_because": "❌ Not stored in {destination}: {error}",
    "line.retention": "🔄 Retention: {days}",
    "line.error": "❗ Error: {error}",
    "line.hint": "💡 Hint: {hint}",
    "line.action": "⚠️ Action required: check the logs",
    "line.manual": "Manual command:",
    "line.no_success_since": "🕰️ No successful backup since {date} ({age} ago)",
    "line.no_success_ever": "🕰️ No successful backup yet",
    "line.previous_success": "🕰️ Previous successful backup: {date} ({age} earlier)",
    "line.first_success": "🕰️ The first successful backup",
    "line.verified": "🔍 Checked: size, SHA-256 and a full read of the archive ({tables})",
    "line.restore_test": "🧪 Restore test: passed in {duration} ({tables}, {rows})",
    "line.restore_test_untimed": "🧪 Restore test: passed ({tables}, {rows})",
    "line.restore_test_skipped": "🧪 Restore test: not run (verify --restore-test)",
    "provider.file": "local directory",
    # Counted words: <key>.one and <key>.other, as plural(n) picks.
    "days.one": "{n} day",
    "days.other": "{n} days",
    "hours.one": "{n} hour",
    "hours.other": "{n} hours",
    "minutes.one": "{n} minute",
    "minutes.other": "{n} minutes",
    "failures.one": "{n} failure",
    "failures.other": "{n} failures",
    "tables.one": "{n} table",
    "tables.other": "{n} tables",
    "tables_checked.one": "{n} table checked",
    "tables_checked.other": "{n} tables checked",
    "row_counts.one": "{n} row count compared",
    "row_counts.other": "{n} row counts compared",
}
