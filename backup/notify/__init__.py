"""Notifiers: Telegram, webhooks, healthchecks pings; see ``base.py``."""
