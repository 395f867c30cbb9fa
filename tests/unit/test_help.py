"""``--help`` of every command says what it does, its options and the environment variables it
uses, from one table (``backup.config.variables``) that must name exactly the variables the
code reads; it reads no value from the environment."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from backup import cli, commands
from backup.config import load, variables
from backup.config.environment import known_variables
from tests.conftest import REPO, clean_environ


def test_the_table_names_exactly_the_variables_the_code_reads():
    documented, read = variables.names(), known_variables()
    missing = sorted(read - documented)
    extra = sorted(documented - read)
    assert not missing, (
        f"read by backup/config but without a row in backup/config/variables.py: {missing} "
        "(add a _v(...) row: name, default, meaning, group, commands; secret=True for a "
        "secret, whose NAME_FILE comes with it)"
    )
    assert not extra, f"rows in backup/config/variables.py that the code never reads: {extra}"


def test_every_row_is_well_formed():
    names = [v.name for v in variables.VARIABLES]
    assert len(names) == len(set(names)), "a variable has two rows"
    for v in variables.VARIABLES:
        assert v.group in variables.GROUPS, v
        assert v.commands and v.commands <= set(commands.COMMANDS), v
        assert v.meaning and "\n" not in v.meaning, v


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_has_a_description_and_every_option_a_help_text():
    parsers = _subparsers()
    assert sorted(parsers) == sorted(commands.COMMANDS)
    for name, parser in parsers.items():
        assert parser.description, name
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"


def _help(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "entrypoint.py"), *args, "--help"],
        env={**clean_environ(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_restore_and_backup_help_list_their_options_and_variables():
    restore = _help("restore")
    assert restore.returncode == 0, restore.stderr
    assert "--target-db" in restore.stdout and "Restore into a fresh database" in restore.stdout
    assert (
        "BACKUP_AGE_IDENTITY*" in restore.stdout and "BACKUP_PROGRESS_SECONDS=30" in restore.stdout
    )
    assert "BACKUP_RETENTION_DAYS" not in restore.stdout  # restore does not prune
    backup = _help("backup")
    assert "BACKUP_DATABASES" in backup.stdout and "BACKUP_COMPRESSION=zstd" in backup.stdout
    listing = _help("list")
    assert "STORAGE_PRICE_PER_GB_MONTH=0.006" in listing.stdout
    everything = _help()
    assert all(v.name in everything.stdout for v in variables.VARIABLES)


SECRETS = {
    "PGPASSWORD": "pg-password-5ecret",
    "B2_APPLICATION_KEY": "K000b2-application-5ecret",
    "DATABASE_URL": "postgresql://u:url-password-5ecret@db.example/shop",
    "TELEGRAM_BOT_TOKEN": "123456:telegram-token-5ecret",
    "BACKUP_AGE_PASSPHRASE": "age-passphrase-5ecret",
    "BACKUP_RETENTION_DAYS": "not a number",  # --help must not even parse the environment
}


@pytest.mark.parametrize("command", [None, *commands.COMMANDS])
def test_help_prints_no_value_of_the_environment_and_fits_the_width(command):
    result = _help(*([command] if command else []), env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert "5ecret" not in result.stdout + result.stderr
    assert "not a number" not in result.stdout + result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= variables.WIDTH


def test_the_defaults_shown_are_the_ones_the_code_uses():
    config = load({"PGDATABASE": "shop"})
    used = {
        "BACKUP_PART_SIZE_MB": config.storage.part_size_bytes // 2**20,
        "BACKUP_RETRY_ATTEMPTS": config.storage.retry.attempts,
        "BACKUP_RETRY_MAX_SECONDS": config.storage.retry.max_seconds,
        "BACKUP_RETRY_BACKOFF_SECONDS": config.storage.retry.initial_backoff_s,
        "STORAGE_PRICE_PER_GB_MONTH": config.storage.price_per_gb_month,
        "BACKUP_COMPRESSION": config.codec.compression,
        "BACKUP_VERIFY": config.verify,
        "BACKUP_ROW_COUNTS": config.row_counts,
        "BACKUP_RETENTION_DAYS": config.retention.days,
        "BACKUP_KEEP_MIN": config.retention.keep_min,
        "NOTIFY_ON": config.notify.notify_on,
        "NOTIFY_TIMEOUT_SECONDS": config.notify.timeout_s,
        "ALERT_AFTER_FAILURES": config.notify.alert_after_failures,
        "TELEGRAM_API_URL": config.notify.telegram_api_url,
        "PROMETHEUS_JOB_NAME": config.metrics.job_name,
        "LOG_FORMAT": config.log.format,
        "LOG_LEVEL": config.log.level,
        "BACKUP_PROGRESS_SECONDS": config.log.progress_interval_s,
        "BACKUP_LOCK_DIR": config.lock_dir,
        "BACKUP_DESTINATIONS": ",".join(config.storage.destinations),
    }
    shown = variables.by_name()
    differ = {
        name: (shown[name].default, value)
        for name, value in used.items()
        if shown[name].default != str(value) and float_or(shown[name].default) != value
    }
    assert not differ, f"--help's default, the code's: {differ}"
    assert config.timeout_s == 6 * 3600 and shown["BACKUP_TIMEOUT"].default == "6h"
    assert config.lock_wait_timeout_s == 300 and shown["BACKUP_LOCK_WAIT_TIMEOUT"].default == "5m"
    assert config.storage.b2.sse_b2 is False and shown["B2_SSE"].default == "false"
    assert config.strict_env is True and shown["BACKUP_STRICT_ENV"].default == "true"


def float_or(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
