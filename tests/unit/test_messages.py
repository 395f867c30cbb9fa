"""The words of the notifications: every language complete, French as the runbook writes it,
dates in NOTIFY_TIMEZONE, escalation, recovery and verify messages. Pure code, no mocks."""

from __future__ import annotations

import re
import string
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from backup import languages
from backup.job.outcome import DatabaseResult, DestinationResult, RunReport, VerifyOutcome
from backup.notify.message import Wording, event, format_message, format_time
from backup.notify.webhook import payload

REPO = Path(__file__).resolve().parents[2]
B2 = "b2://my-bucket/backups/postgresql"
# 03:00:15 UTC: 04:00:15 in Paris in winter (CET), as the runbook's "2025-11-10 03:00:15" shows
# a Paris cron's time; in summer Paris is UTC+2 (CEST).
FINISHED = datetime(2025, 11, 10, 3, 0, 15, tzinfo=UTC)
FR = Wording("fr", "Europe/Paris")

# The two Telegram messages of the French runbook the job grew from (its "Monitoring /
# Notification Admin" section), copied line for line.
RUNBOOK_SUCCESS = """✅ Backup PostgreSQL Réussi

📅 Date : 2025-11-10 03:00:15
💾 Taille : 2.34 MB
☁️ Stockage : Backblaze B2
🔄 Rétention : 30 jours"""
RUNBOOK_FAILURE = """❌ Backup PostgreSQL Échoué

📅 Date : 2025-11-10 03:00:15
⚠️ Action requise : Vérifier les logs

Commande manuelle :
`python -m app.tasks.backup_database`"""


def report(status: str = "success", **changes: object) -> RunReport:
    ok = status == "success"
    result = DatabaseResult(
        database="shop",
        status=status,
        name="shop-20251110T030000Z" if ok else None,
        size_bytes=2_340_000 if ok else 0,
        destinations=(DestinationResult(B2, ok, None if ok else "upload failed"),),
        error=None if ok else "pg_dump: error: connection refused",
    )
    base = RunReport(
        command="backup",
        status=status,
        exit_code=0 if ok else 3,
        started_at=FINISHED - timedelta(seconds=15),
        finished_at=FINISHED,
        host="db.internal:5432",
        results=(result,),
        error=result.error,
        hint=None if ok else "check PGHOST",
        consecutive_failures=0 if ok else 1,
    )
    return replace(base, **changes)


def verify_report(status: str = "success", **outcome: object) -> RunReport:
    found = VerifyOutcome(
        name="shop-20251110T030000Z",
        database="shop",
        destination=B2,
        size_bytes=2_340_000,
        tables=12,
        restore_test=True,
        restore_seconds=4.2,
        tables_checked=12,
        row_counts_checked=11,
    )
    return RunReport(
        command="verify",
        status=status,
        exit_code=0 if status == "success" else 5,
        started_at=FINISHED - timedelta(seconds=6),
        finished_at=FINISHED,
        host="db.internal:5432",
        error=None if status == "success" else "sha256 mismatch",
        manual_command="python entrypoint.py verify --restore-test",
        verify=replace(found, **outcome),
    )


def in_order(expected: list[str], lines: list[str]) -> bool:
    """Each expected line starts one of ``lines``, in the same order."""
    position = 0
    for wanted in expected:
        while position < len(lines) and not lines[position].startswith(wanted):
            position += 1
        if position == len(lines):
            return False
        position += 1
    return True


# ---- the language files ----------------------------------------------------------------------


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_the_languages_are_found_by_their_files() -> None:
    files = sorted(p.stem for p in (REPO / "backup" / "languages").glob("[!_]*.py"))
    assert list(languages.AVAILABLE) == files
    assert {"en", "fr"} <= set(files)


@pytest.mark.parametrize("code", languages.AVAILABLE)
def test_every_language_has_the_same_keys_and_placeholders_as_english(code: str) -> None:
    english = languages.language("en")
    language = languages.language(code)
    assert set(language.messages()) == set(english.messages()), f"{code}: messages differ from en"
    for stem, categories in english.messages().items():
        # a counted word is written in every category of the language's own rules, no other
        wanted = set(language.plurals) if categories else set()
        assert language.messages()[stem] == wanted, f"{code}: {stem}"
        reference = english.words[f"{stem}.other" if categories else stem]
        for key in [f"{stem}.{c}" for c in sorted(wanted)] or [stem]:
            assert _fields(language.words[key]) == _fields(reference), f"{code}: {key}"
            assert not re.search(r"[<>&]", language.words[key]), f"{code}: {key} needs escaping"


@pytest.mark.parametrize("code", languages.AVAILABLE)
def test_every_plural_form_a_language_picks_exists(code: str) -> None:
    language = languages.language(code)
    counted = [stem for stem, categories in language.messages().items() if categories]
    assert counted
    for n in range(0, 1002):
        assert language.plural(n) in language.plurals
        for stem in counted:
            assert f"{stem}.{language.plural(n)}" in language.words
    assert language.ordinal(2).startswith("2")


def _polish_plural(n: int) -> str:
    if n == 1:
        return "one"
    if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
        return "few"
    return "many"


# A language with four plural categories, as a third language file would be written (its
# module's names): the rules need no change anywhere else.
_POLISH = SimpleNamespace(
    PLURALS=("one", "few", "many", "other"),
    WORDS={
        "days.one": "{n} dzień",
        "days.few": "{n} dni",
        "days.many": "{n} dni",
        "days.other": "{n} dnia",
    },
    plural=_polish_plural,
    ordinal=lambda n: f"{n}.",
)


def test_a_language_with_more_plural_categories_counts_with_its_own() -> None:
    polish = languages.from_module("pl", _POLISH)
    assert [polish.count("days", n) for n in (1, 2, 5, 22, 112)] == [
        "1 dzień",
        "2 dni",
        "5 dni",
        "22 dni",
        "112 dni",
    ]
    assert polish.messages() == {"days": {"one", "few", "many", "other"}}
    with pytest.raises(ValueError, match="CLDR"):
        languages.from_module("xx", SimpleNamespace(**{**vars(_POLISH), "PLURALS": ("single",)}))


def test_help_lists_the_languages_from_the_code() -> None:
    from backup.config.variables import VARIABLES

    (row,) = [v for v in VARIABLES if v.name == "NOTIFY_LANGUAGE"]
    for code in languages.AVAILABLE:
        assert code in row.meaning


def test_french_plurals_and_ordinals() -> None:
    fr = languages.language("fr")
    assert [fr.count("days", n) for n in (0, 1, 2)] == ["0 jour", "1 jour", "2 jours"]
    assert [fr.ordinal(n) for n in (1, 2, 3, 21)] == ["1er", "2e", "3e", "21e"]
    en = languages.language("en")
    assert [en.count("days", n) for n in (0, 1, 2)] == ["0 days", "1 day", "2 days"]


# ---- French, as the runbook writes it ------------------------------------------------------------


def test_french_success_has_the_runbook_lines_in_its_order() -> None:
    text = format_message(report(), html=False, wording=Wording("fr", "UTC"))
    lines = text.splitlines()
    assert lines[:2] == ["✅ Backup PostgreSQL Réussi", ""]
    runbook = RUNBOOK_SUCCESS.splitlines()[2:]
    # Our date carries its zone ("03:00:15 UTC"), our storage its URL: the runbook's line starts
    # ours. Every other runbook line is ours exactly.
    assert in_order(runbook, lines), text
    assert "💾 Taille : 2.34 MB" in lines
    assert "🔄 Rétention : 30 jours" in lines
    assert f"☁️ Stockage : Backblaze B2 ({B2})" in lines
    assert "📅 Date : 2025-11-10 03:00:15 UTC" in lines


def test_french_failure_has_the_runbook_lines_in_its_order() -> None:
    text = format_message(report("failure"), html=False, wording=Wording("fr", "UTC"))
    lines = text.splitlines()
    assert lines[:2] == ["❌ Backup PostgreSQL Échoué", ""]
    runbook = RUNBOOK_FAILURE.splitlines()
    # The runbook's manual command is its own program's; ours is this job's.
    assert in_order(runbook[2:6], lines), text
    assert lines[-4:] == [
        "⚠️ Action requise : Vérifier les logs",
        "",
        "Commande manuelle :",
        "pgbackup backup",
    ]
    assert "❗ Erreur : pg_dump: error: connection refused" in lines  # quoted as the job says it
    assert "💡 Conseil : check PGHOST" in lines


def test_french_html_keeps_the_runbook_title_bold() -> None:
    text = format_message(report("failure"), wording=FR)
    assert text.startswith("<b>❌ Backup PostgreSQL Échoué</b>\n")
    assert "\nCommande manuelle :\n<code>pgbackup backup</code>" in text


def test_every_line_but_the_quoted_ones_is_french() -> None:
    """No English label left in a French message (the error and hint are the job's words)."""
    for rep in (report(), report("failure", consecutive_failures=3), report(previous_failures=2)):
        text = format_message(rep, html=False, wording=FR)
        for english in ("Size", "Storage", "Retention", "Date:", "Server", "Manual", "required"):
            assert english not in text


# ---- time zones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "zone", "shown"),
    [
        (FINISHED, "Europe/Paris", "2025-11-10 04:00:15 CET"),
        (datetime(2025, 7, 1, 1, 30, tzinfo=UTC), "Europe/Paris", "2025-07-01 03:30:00 CEST"),
        # the night the clocks go back: 00:30 UTC is 02:30 CEST, 01:30 UTC is 02:30 CET
        (datetime(2025, 10, 26, 0, 30, tzinfo=UTC), "Europe/Paris", "2025-10-26 02:30:00 CEST"),
        (datetime(2025, 10, 26, 1, 30, tzinfo=UTC), "Europe/Paris", "2025-10-26 02:30:00 CET"),
        (FINISHED, "UTC", "2025-11-10 03:00:15 UTC"),
        (FINISHED, "America/Sao_Paulo", "2025-11-10 00:00:15 -03"),
        (FINISHED.replace(tzinfo=None), "Asia/Kolkata", "2025-11-10 08:30:15 IST"),
    ],
)
def test_dates_are_shown_in_the_configured_zone(moment: datetime, zone: str, shown: str) -> None:
    assert format_time(moment, zone) == shown


def test_every_date_of_a_message_is_in_the_zone() -> None:
    last = datetime(2025, 7, 8, 1, 0, tzinfo=UTC)
    text = format_message(
        report("failure", consecutive_failures=2, last_success_at=last), html=False, wording=FR
    )
    assert "📅 Date : 2025-11-10 04:00:15 CET" in text
    assert "depuis le 2025-07-08 03:00:00 CEST" in text
    assert "UTC" not in text


# ---- escalation ----------------------------------------------------------------------------------


def test_escalation_is_its_own_louder_message_in_both_languages() -> None:
    last = FINISHED - timedelta(days=2, hours=1)
    escalated = report("failure", consecutive_failures=3, last_success_at=last)
    assert event(escalated) == "escalation"
    en = format_message(escalated, html=False).splitlines()
    assert en[0] == "🚨 PostgreSQL backup: 3rd failure in a row"
    assert "🕰️ No successful backup since 2025-11-08 02:00:15 UTC (2 days ago)" in en
    fr = format_message(escalated, html=False, wording=FR).splitlines()
    assert fr[0] == "🚨 Backup PostgreSQL : 3e échec consécutif"
    assert "🕰️ Aucun backup réussi depuis le 2025-11-08 03:00:15 CET (il y a 2 jours)" in fr
    assert fr[-4:-2] == ["⚠️ Action requise : Vérifier les logs", ""]


def test_the_mention_calls_people_on_escalations_only() -> None:
    wording = Wording("en", "UTC", "@alice <!channel>")
    escalated = format_message(report("failure", consecutive_failures=2), wording=wording)
    assert escalated.startswith("@alice &lt;!channel&gt; <b>🚨 PostgreSQL backup: 2nd failure")
    plain = format_message(report("failure", consecutive_failures=2), html=False, wording=wording)
    assert plain.startswith("@alice <!channel> 🚨")  # Slack reads <!channel> in webhook text
    for quiet in (report("failure"), report(), report(previous_failures=2)):
        assert "@alice" not in format_message(quiet, wording=wording)


def test_an_escalated_partial_run_is_an_escalation_too() -> None:
    partial = report("partial", consecutive_failures=2, exit_code=6)
    assert event(partial) == "escalation"
    assert format_message(partial, html=False).startswith("🚨 PostgreSQL backup: 2nd failure")


# ---- recovery ------------------------------------------------------------------------------------


def test_recovery_says_after_how_many_failures_and_since_when() -> None:
    last = FINISHED - timedelta(days=3)
    recovered = report(previous_failures=3, last_success_at=last)
    assert event(recovered) == "recovery"
    en = format_message(recovered, html=False).splitlines()
    assert en[0] == "✅ PostgreSQL backup recovered after 3 failures"
    assert "🕰️ Previous successful backup: 2025-11-07 03:00:15 UTC (3 days earlier)" in en
    assert "🔄 Retention: 30 days" in en
    fr = format_message(recovered, html=False, wording=FR).splitlines()
    assert fr[0] == "✅ Backup PostgreSQL Rétabli après 3 échecs"
    assert "🕰️ Backup réussi précédent : 2025-11-07 04:00:15 CET (3 jours plus tôt)" in fr
    one = format_message(report(previous_failures=1), html=False, wording=FR)
    assert one.startswith("✅ Backup PostgreSQL Rétabli après 1 échec\n")
    assert "🕰️ Le premier backup réussi" in one


def test_a_success_after_a_success_is_a_plain_success() -> None:
    assert event(report()) == "success"
    assert format_message(report(), html=False).startswith("✅ PostgreSQL backup succeeded\n")


# ---- verify --------------------------------------------------------------------------------------


def test_a_verify_that_passed_says_what_was_checked() -> None:
    en = format_message(verify_report(), html=False).splitlines()
    assert en[0] == "✅ PostgreSQL verify succeeded"
    for line in (
        "📦 Backup: shop-20251110T030000Z",
        f"☁️ Storage: Backblaze B2 ({B2})",
        "💾 Size: 2.34 MB",
        "🔍 Checked: size, SHA-256 and a full read of the archive (12 tables)",
        "🧪 Restore test: passed in 4.2 s (12 tables checked, 11 row counts compared)",
    ):
        assert line in en
    assert not any(line.startswith("🔄") for line in en)  # retention is a backup's
    fr = format_message(verify_report(), html=False, wording=FR).splitlines()
    assert fr[0] == "✅ Vérification PostgreSQL Réussie"
    assert "📦 Sauvegarde : shop-20251110T030000Z" in fr
    assert "🔍 Vérifié : taille, SHA-256 et lecture complète de l'archive (12 tables)" in fr
    assert (
        "🧪 Test de restauration : réussi en 4.2 s (12 tables vérifiées, "
        "11 comptages de lignes comparés)"
    ) in fr


def test_a_verify_without_restore_test_says_it_was_not_run() -> None:
    rep = verify_report(restore_test=False, restore_seconds=None, tables_checked=0)
    assert "🧪 Restore test: not run (verify --restore-test)" in format_message(rep, html=False)
    fr = format_message(rep, html=False, wording=FR)
    assert "🧪 Test de restauration : non lancé (verify --restore-test)" in fr
    untimed = verify_report(restore_seconds=None, tables_checked=1, row_counts_checked=1)
    text = format_message(untimed, html=False, wording=FR)
    assert (
        "🧪 Test de restauration : réussi (1 table vérifiée, 1 comptage de lignes comparé)" in text
    )


def test_a_failed_verify_names_the_backup_in_both_languages() -> None:
    en = format_message(verify_report("failure"), html=False).splitlines()
    assert en[0] == "❌ PostgreSQL verify failed"
    assert "📦 Backup: shop-20251110T030000Z" in en and "❗ Error: sha256 mismatch" in en
    assert en[-1] == "python entrypoint.py verify --restore-test"
    assert not any(line.startswith("🧪") for line in en)
    fr = format_message(verify_report("failure"), html=False, wording=FR).splitlines()
    assert fr[0] == "❌ Vérification PostgreSQL Échouée"
    assert "❗ Erreur : sha256 mismatch" in fr and "Commande manuelle :" in fr
    without = replace(verify_report("failure"), verify=None)
    assert "📦" not in format_message(without, html=False)


@pytest.mark.parametrize(
    ("command", "title"),
    [
        ("prune", "❌ Nettoyage PostgreSQL Échoué"),
        ("status", "❌ Contrôle PostgreSQL Échoué"),
        ("restore", "❌ PostgreSQL restore : Échoué"),
    ],
)
def test_other_commands_have_french_titles(command: str, title: str) -> None:
    rep = replace(report("failure"), command=command, results=())
    assert format_message(rep, html=False, wording=FR).splitlines()[0] == title


# ---- webhook -------------------------------------------------------------------------------------


def test_the_webhook_names_the_event_and_keeps_its_fields_english() -> None:
    escalated = payload(report("failure", consecutive_failures=2), FR)
    assert escalated["event"] == "escalation" and escalated["status"] == "failure"
    assert str(escalated["text"]).startswith("🚨 Backup PostgreSQL : 2e échec consécutif")
    assert escalated["finished_at"] == "2025-11-10T03:00:15Z"  # machines get UTC
    recovered = payload(report(previous_failures=2))
    assert recovered["event"] == "recovery" and recovered["previous_failures"] == 2
    assert payload(report())["event"] == "success"
    assert payload(report("failure"))["event"] == "failure"


def test_time_zones_work_without_the_systems_zone_files() -> None:
    """A slim image may have no /usr/share/zoneinfo: the tzdata package is what zoneinfo falls
    back to, so it is a dependency (pyproject.toml)."""
    code = (
        "import zoneinfo; from backup.config import load; "
        "print(load({'PGDATABASE': 'x', 'NOTIFY_TIMEZONE': 'Europe/Paris'}).notify.timezone)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONTZPATH": "/nonexistent", "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Europe/Paris"
