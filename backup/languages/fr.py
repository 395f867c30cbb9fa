"""Français : les messages du runbook d'origine (« ✅ Backup PostgreSQL Réussi »,
« ⚠️ Action requise : Vérifier les logs »), avec l'espace avant les deux-points. Les tailles
gardent « MB » et le point décimal, comme le runbook (« 💾 Taille : 2.34 MB »)."""

from __future__ import annotations

# CLDR plural categories this language uses (see __init__.py)
PLURALS = ("one", "other")


def plural(n: int) -> str:
    # 0 and 1 take the singular in French: "0 jour", "1 jour", "2 jours".
    return "one" if n in (0, 1) else "other"


def ordinal(n: int) -> str:
    """1er, 2e, 3e, 11e, 21e, ..."""
    return "1er" if n == 1 else f"{n}e"


WORDS: dict[str, str] = {
    "title.backup.success": "✅ Backup PostgreSQL Réussi",
    "title.backup.partial": "⚠️ Backup PostgreSQL Partiel",
    "title.backup.failure": "❌ Backup PostgreSQL Échoué",
    "title.backup.escalation": "🚨 Backup PostgreSQL : {ordinal} échec consécutif",
    "title.backup.recovery": "✅ Backup PostgreSQL Rétabli après {failures}",
    "title.verify.success": "✅ Vérification PostgreSQL Réussie",
    "title.verify.failure": "❌ Vérification PostgreSQL Échouée",
    "title.prune.failure": "❌ Nettoyage PostgreSQL Échoué",
    "title.status.failure": "❌ Contrôle PostgreSQL Échoué",
    "title.other.success": "✅ PostgreSQL {command} : Réussi",
    "title.other.partial": "⚠️ PostgreSQL {command} : Partiel",
    "title.other.failure": "❌ PostgreSQL {command} : Échoué",
    "line.date": "📅 Date : {date}",
    "line.server": "🖥️ Serveur : {host}",
    "line.database": "🗄️ Base : {database}",
    "line.databases": "🗄️ Bases ({count}) :",
    "line.more": "… et {count} de plus",
    "line.backup": "📦 Sauvegarde : {name}",
    "line.size": "💾 Taille : {size}",
    "line.duration": "⏱️ Durée : {duration}",
    "line.storage": "☁️ Stockage : {destinations}",
    "line.stored_in": "☁️ Stocké dans : {destinations}",
    "line.not_stored": "❌ Non stocké dans {destination}",
    "line.not_stored_because": "❌ Non stocké dans {destination} : {error}",
    "line.retention": "🔄 Rétention : {days}",
    "line.error": "❗ Erreur : {error}",
    "line.hint": "💡 Conseil : {hint}",
    "line.action": "⚠️ Action requise : Vérifier les logs",
    "line.manual": "Commande manuelle :",
    "line.no_success_since": "🕰️ Aucun backup réussi depuis le {date} (il y a {age})",
    "line.no_success_ever": "🕰️ Encore aucun backup réussi",
    "line.previous_success": "🕰️ Backup réussi précédent : {date} ({age} plus tôt)",
    "line.first_success": "🕰️ Le premier backup réussi",
    "line.verified": ("🔍 Vérifié : taille, SHA-256 et lecture complète de l'archive ({tables})"),
    "line.restore_test": "🧪 Test de restauration : réussi en {duration} ({tables}, {rows})",
    "line.restore_test_untimed": "🧪 Test de restauration : réussi ({tables}, {rows})",
    "line.restore_test_skipped": "🧪 Test de restauration : non lancé (verify --restore-test)",
    "provider.file": "dossier local",
    "days.one": "{n} jour",
    "days.other": "{n} jours",
    "hours.one": "{n} heure",
    "hours.other": "{n} heures",
    "minutes.one": "{n} minute",
    "minutes.other": "{n} minutes",
    "failures.one": "{n} échec",
    "failures.other": "{n} échecs",
    "tables.one": "{n} table",
    "tables.other": "{n} tables",
    "tables_checked.one": "{n} table vérifiée",
    "tables_checked.other": "{n} tables vérifiées",
    "row_counts.one": "{n} comptage de lignes comparé",
    "row_counts.other": "{n} comptages de lignes comparés",
}
