"""Hostile and careless configuration (issue 11): each value the issue found accepted, crashing
or refused with the wrong exit code is now a clean ``ConfigError`` naming its variable."""

from __future__ import annotations

import os
from pathlib import Path

import pyrage
import pytest

from backup.config import Destination, load, unknown_variables
from backup.config.cpus import available_cores
from backup.config.files import MAX_FILE_BYTES
from backup.errors import ConfigError
from tests.conftest import run_job

BASE = {"PGDATABASE": "shop"}
SECRET = "hunter2-very-secret"


def refusal(**env: str) -> str:
    """The message of the ConfigError that ``load`` raises for ``BASE`` plus ``env``."""
    with pytest.raises(ConfigError) as caught:
        load({**BASE, **env})
    assert caught.value.exit_code == 2
    return caught.value.message


# --- *_FILE: regular files only, bounded, UTF-8 ---------------------------------------------


@pytest.fixture
def special_files(tmp_path: Path) -> dict[str, str]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "latin1").write_bytes(b"caf\xe9\xff")
    (tmp_path / "huge").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    return {
        "a FIFO": str(fifo),
        "a device": "/dev/zero",
        "a directory": str(tmp_path),
        "not UTF-8": str(tmp_path / "latin1"),
        "larger than 64 KiB": str(tmp_path / "huge"),
    }


@pytest.mark.parametrize(
    "name",
    ["PGPASSWORD", "DATABASE_URL", "B2_APPLICATION_KEY", "BACKUP_AGE_IDENTITY", "HEALTHCHECK_URL"],
)
def test_a_secret_file_must_be_a_small_regular_utf8_file(
    name: str, special_files: dict[str, str]
) -> None:
    for expected, path in special_files.items():
        message = refusal(**{f"{name}_FILE": path})
        assert message.startswith(f"{name}_FILE: {path}"), message
        assert expected in message, message


def test_the_recipients_file_is_read_the_same_way(special_files: dict[str, str]) -> None:
    message = refusal(BACKUP_AGE_RECIPIENTS_FILE=special_files["a FIFO"])
    assert message.startswith("BACKUP_AGE_RECIPIENTS_FILE:") and "a FIFO" in message


# --- a key's place left empty never means plaintext (issue 15) ------------------------------


@pytest.mark.parametrize(
    "text", ["", "\n", "   \n\t\n", "# the team's key\n", "  # indented comment\n\n"]
)
def test_a_recipients_file_naming_no_recipient_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "recipients.txt"
    path.write_text(text)
    message = refusal(BACKUP_AGE_RECIPIENTS_FILE=str(path))
    assert message.startswith(f"BACKUP_AGE_RECIPIENTS_FILE: {path} names no recipient"), message


def test_a_recipients_file_with_comments_and_a_key_encrypts(tmp_path: Path) -> None:
    public = str(pyrage.x25519.Identity.generate().to_public())
    path = tmp_path / "recipients.txt"
    path.write_text(f"# ops team\n  # rotated 2026-11\n\n{public}\n")
    config = load({**BASE, "BACKUP_AGE_RECIPIENTS_FILE": str(path)})
    assert config.codec.encrypted and config.codec.age_recipients == (public,)


@pytest.mark.parametrize(
    "name",
    [
        "BACKUP_AGE_RECIPIENTS",
        "BACKUP_AGE_RECIPIENTS_FILE",
        "BACKUP_AGE_PASSPHRASE",
        "BACKUP_AGE_PASSPHRASE_FILE",
        "BACKUP_AGE_IDENTITY",
        "BACKUP_AGE_IDENTITY_FILE",
        "BACKUP_DEDUP_KEY",
        "BACKUP_DEDUP_KEY_FILE",
    ],
)
@pytest.mark.parametrize("value", [" ", "\n", ",", " , ,"])
def test_a_key_variable_set_to_blanks_is_refused_not_unset(name: str, value: str) -> None:
    """A secret mounted from an empty key, a template that lost its value: exit 2, never a
    plaintext backup. (An empty value is unset, as for every variable.)"""
    message = refusal(**{name: value})
    assert f"{name} is set but holds only blanks or commas" in message, message


def test_an_empty_key_variable_is_unset() -> None:
    config = load({**BASE, "BACKUP_AGE_RECIPIENTS": "", "BACKUP_AGE_PASSPHRASE": ""})
    assert not config.codec.encrypted


# --- URLs and hosts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "http://[::1"),
        ("DATABASE_URL", "postgresql://u:pw@[::1/db"),
        ("VERIFY_DATABASE_URL", "postgresql://[cfg/x"),
        ("NOTIFY_WEBHOOK_URL", "http://[::1"),
        ("HEALTHCHECK_URL", "http://[::1"),
        ("PROMETHEUS_PUSHGATEWAY_URL", "http://[::1"),
        ("TELEGRAM_API_URL", "http://[::1"),
        ("S3_ENDPOINT_URL", "http://[::1"),
        ("S3_ENDPOINT_URL", "http://minio\n.local"),
        ("S3_ENDPOINT_URL", "http://mïnio.local"),
        ("S3_ENDPOINT_URL", "http://minio:0"),
        ("HEALTHCHECK_URL", "http://bad_host!/x"),
        ("PGHOST", "a" * 300),
        ("PGHOST", "db..internal"),
        ("PGHOST", "db.internal,"),
        ("PGPORT", "99999"),
        ("AWS_REGION", "eu central 1"),
        ("AWS_REGION", "-eu"),
        ("AWS_DEFAULT_REGION", "x" * 64),
    ],
)
def test_bad_urls_hosts_and_regions_are_refused_naming_the_variable(name: str, value: str) -> None:
    message = refusal(**{name: value})
    assert message.startswith(name), message


@pytest.mark.parametrize(
    "env",
    [
        {"PGHOST": "/var/run/postgresql"},
        {"PGHOST": "db1.internal,10.0.0.2,::1", "PGPORT": "5432,5433,5434"},
        {"DATABASE_URL": "postgresql://%2Fvar%2Frun%2Fpostgresql/shop"},
        {"DATABASE_URL": "postgres://app:pw@[::1]:5433/shop?sslmode=verify-full"},
        {"S3_ENDPOINT_URL": "http://127.0.0.1:8333", "AWS_REGION": "auto"},
        {"AWS_REGION": "eu-central-003"},
        {"PROMETHEUS_PUSHGATEWAY_URL": "http://[::1]:9091"},
    ],
)
def test_what_users_write_is_still_accepted(env: dict[str, str]) -> None:
    load({**BASE, **env})


def test_a_bad_database_url_never_prints_its_password() -> None:
    for url in (
        f"postgresql://app:{SECRET}@[::1/shop",
        f"postgresql://app:{SECRET}@db.internal:99999/shop",
        f"postgresql://app:{SECRET}@bad_host!/shop",
        f"mysql://app:{SECRET}@db/shop",
        f"postgresql://app:{SECRET}@db/sh\nop",
        f"postgresql://app:{SECRET}@db/shop with space",
    ):
        for name in ("DATABASE_URL", "VERIFY_DATABASE_URL"):
            message = refusal(**{name: url})
            assert name in message
            assert SECRET not in message, message
    message = refusal(DATABASE_URL=f"postgresql://app:{SECRET}@db/shop?sslmode=sometimes")
    assert "sslmode" in message and SECRET not in message


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKUP_RETENTION_DAYS", "99999999999"),
        ("BACKUP_RETENTION_DAYS", "36501"),
        ("BACKUP_KEEP_MIN", "10001"),
        ("BACKUP_KEEP_DAILY", "1" * 5000),
        ("BACKUP_KEEP_WEEKLY", "1_000"),
        ("BACKUP_KEEP_MONTHLY", "١٢"),
        ("ALERT_AFTER_FAILURES", "1e3"),
        ("BACKUP_RETRY_MAX_SECONDS", "nan"),
        ("BACKUP_RETRY_BACKOFF_SECONDS", "inf"),
        ("NOTIFY_TIMEOUT_SECONDS", "1e400"),
        ("BACKUP_PROGRESS_SECONDS", "86401"),
        ("BACKUP_TIMEOUT", "8d"),
        ("BACKUP_TIMEOUT", "999999999h"),
        ("BACKUP_LOCK_WAIT_TIMEOUT", "25h"),
        ("PGCONNECT_TIMEOUT", "forever"),
        ("BACKUP_COMPRESSION_THREADS", "-1"),
        ("BACKUP_COMPRESSION_THREADS", "65"),
        ("BACKUP_COMPRESSION_THREADS", "auto"),
    ],
)
def test_numbers_are_bounded(name: str, value: str) -> None:
    message = refusal(**{name: value})
    assert message.startswith(name), message


def test_compression_threads_default_to_the_cores_the_job_may_use() -> None:
    assert load(BASE).codec.threads == available_cores()
    assert load({**BASE, "BACKUP_COMPRESSION_THREADS": "0"}).codec.threads == 0
    assert load({**BASE, "BACKUP_COMPRESSION_THREADS": "64"}).codec.threads == 64


# --- destinations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/../../escape",
        "s3://bucket/a/./b",
        "s3://bucket/a//b",
        "s3://[cfg/x",
        "s3://bu/x",
        "s3://Bucket Name/x",
        "b2://-bucket-/x",
        "s3://bucket/p?versionId=1",
        "s3://bucket/p\nfile:///tmp",
        "file://relative/path",
        "file://localhost/var/backups",
        "file:///var/../etc",
        "file://../backups",
        "file:relative",
    ],
)
def test_bad_destinations_are_refused(url: str) -> None:
    assert refusal(BACKUP_DESTINATIONS=url).startswith("BACKUP_DESTINATIONS")


def test_credentials_in_a_destination_are_refused_without_being_echoed() -> None:
    for url in (f"file://user:{SECRET}@/path", f"s3://key:{SECRET}@bucket/p"):
        message = refusal(BACKUP_DESTINATIONS=url)
        assert "credentials" in message and SECRET not in message


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("file://./backups", "./backups"),
        ("file://./relative/deeper", "./relative/deeper"),
        ("file:///var/backups", "/var/backups"),
        ("s3://my.bucket_1/backups/postgresql/", "backups/postgresql"),
    ],
)
def test_documented_destinations_still_parse(url: str, prefix: str) -> None:
    assert Destination.parse(url).prefix == prefix


# --- age keys, metrics file, other words -------------------------------------------------------


def test_age_keys_are_parsed_at_load() -> None:
    assert refusal(BACKUP_AGE_RECIPIENTS="age1notakey").startswith("BACKUP_AGE_RECIPIENTS")
    message = refusal(BACKUP_AGE_IDENTITY=f"AGE-SECRET-KEY-1{SECRET}")
    assert message.startswith("BACKUP_AGE_IDENTITY") and SECRET not in message
    identity = pyrage.x25519.Identity.generate()
    config = load(
        {
            **BASE,
            "BACKUP_AGE_RECIPIENTS": str(identity.to_public()),
            "BACKUP_AGE_IDENTITY": f"# created: today\n{identity}\n",
        }
    )
    assert config.codec.encrypted


def test_the_metrics_file_must_be_a_file_in_a_directory_that_exists(tmp_path: Path) -> None:
    assert "does not exist" in refusal(METRICS_FILE=str(tmp_path / "missing" / "job.prom"))
    assert "is a directory" in refusal(METRICS_FILE=str(tmp_path))
    load({**BASE, "METRICS_FILE": str(tmp_path / "job.prom")})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TELEGRAM_CHAT_ID", "my friends"),
        ("ADMIN_USER_ID", "12ab"),
        ("S3_SSE", "aes256-please"),
        ("B2_KEY_ID", "key id"),
        ("B2_BUCKET_NAME", "x"),
        ("PGSSLMODE", "sometimes"),
        ("PGTARGETSESSIONATTRS", "leader"),
        ("BACKUP_DATABASES", "d" * 64),
        ("BACKUP_LOCK_DIR", "/tmp/\nx"),
        ("PGPASSWORD", "x" * 70_000),
        ("BACKUP_DATABASES", "x" * 100_000),
    ],
)
def test_other_values_are_checked(name: str, value: str) -> None:
    message = refusal(**{name: value})
    assert message.startswith(name), message
    assert len(message) < 300


# --- typos ---------------------------------------------------------------------------------------


def test_unknown_variables_with_the_job_prefixes_get_a_suggestion() -> None:
    env = {
        **BASE,
        "BACKUP_RETENTON_DAYS": "7",
        "BACKUP_DESTINATION": "s3://bucket/x",
        "LOG_LEVL": "debug",
        "BACKUP_DESTINATIONS_FILE": "/run/secrets/x",
        "PGPASSWORD_FILE_X": "not ours",
        "TELEGRAM_BOT_TOKEN_FILE": "/dev/null",
        "AWS_PROFILE": "not ours either",
    }
    found = dict(unknown_variables(env))
    assert found == {
        "BACKUP_RETENTON_DAYS": "BACKUP_RETENTION_DAYS",
        "BACKUP_DESTINATION": "BACKUP_DESTINATIONS",
        "BACKUP_DESTINATIONS_FILE": "BACKUP_DESTINATIONS",
        "LOG_LEVL": "LOG_LEVEL",
    }
    config = load({k: v for k, v in env.items() if k != "TELEGRAM_BOT_TOKEN_FILE"})
    assert dict(config.unknown_variables) == found
    assert config.strict_env
    assert not load({**BASE, "BACKUP_STRICT_ENV": "false"}).strict_env


def test_every_documented_variable_with_a_prefix_is_known() -> None:
    from tests.unit.test_readme_configuration import documented

    env = {name: "" for name in documented()}
    assert unknown_variables(env) == []


def test_every_command_warns_about_a_typo(tmp_path: Path) -> None:
    result = run_job(
        "list",
        env={
            "BACKUP_DESTINATIONS": f"file://{tmp_path}",
            "BACKUP_RETENTON_DAYS": "7",
            "BACKUP_LOCK_DIR": str(tmp_path),
        },
        timeout=60,
    )
    assert result.returncode == 0, result.output
    assert "BACKUP_RETENTON_DAYS is not a variable of this job" in result.stderr
    assert "did you mean BACKUP_RETENTION_DAYS?" in result.stderr


def test_the_cli_refuses_hostile_values_at_once_without_a_traceback(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = run_job(
        "list",
        env={
            "BACKUP_DESTINATIONS": f"file://{tmp_path}",
            "DATABASE_URL": f"postgresql://app:{SECRET}@[::1/shop",
            "NOTIFY_WEBHOOK_URL": "http://[::1",
            "HEALTHCHECK_URL_FILE": str(fifo),
            "BACKUP_RETENTION_DAYS": "99999999999",
            "S3_ENDPOINT_URL": "http://mïnio:9000",
        },
        timeout=60,
    )
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    for name in (
        "DATABASE_URL",
        "NOTIFY_WEBHOOK_URL",
        "HEALTHCHECK_URL_FILE",
        "BACKUP_RETENTION_DAYS",
        "S3_ENDPOINT_URL",
    ):
        assert name in result.stderr, name


def test_the_lenient_read_for_reports_leaves_out_broken_urls() -> None:
    from backup.config.environment import parse_for_reports

    settings = parse_for_reports(
        {
            "NOTIFY_WEBHOOK_URL": "http://[::1,http://127.0.0.1:9/hook",
            "HEALTHCHECK_URL": "http://bad host/x",
            "PROMETHEUS_PUSHGATEWAY_URL": "http://[::1",
            "METRICS_FILE": "/nonexistent/x.prom",
        }
    )
    assert [u.reveal() for u in settings.notify.webhook_urls] == ["http://127.0.0.1:9/hook"]
    assert settings.notify.healthcheck_url is None
    assert settings.metrics.pushgateway_url is None and settings.metrics.metrics_file is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PGDATABASE": "d" * 64}, "PGDATABASE"),
        ({"DATABASE_URL": "postgresql://db.example/" + "d" * 64}, "DATABASE_URL's database"),
        ({"BACKUP_DATABASES": "shop," + "d" * 64}, "BACKUP_DATABASES"),
    ],
)
def test_a_database_name_too_long_is_refused_under_the_variable_that_named_it(env, named):
    with pytest.raises(ConfigError) as caught:
        load({"BACKUP_DESTINATIONS": "file:///backups", **env})
    assert caught.value.problems[0].startswith(f"{named}: ")


# --- the words of the notifications: language, time zone, mention ---------------------------------


def test_notification_language_time_zone_and_mention_are_read() -> None:
    defaults = load(BASE).notify
    assert (defaults.language, defaults.timezone, defaults.mention) == ("en", "UTC", None)
    notify = load(
        {
            **BASE,
            "NOTIFY_LANGUAGE": "FR",
            "NOTIFY_TIMEZONE": "Europe/Paris",
            "NOTIFY_MENTION": "@alice @bob",
        }
    ).notify
    assert (notify.language, notify.timezone, notify.mention) == (
        "fr",
        "Europe/Paris",
        "@alice @bob",
    )


@pytest.mark.parametrize("value", ["de", "french", "en_US", "fr-FR", "../fr"])
def test_an_unknown_language_is_refused_with_the_choices(value: str) -> None:
    message = refusal(NOTIFY_LANGUAGE=value)
    assert message.startswith(f"NOTIFY_LANGUAGE={value!r} must be one of: en, fr"), message


@pytest.mark.parametrize(
    "value",
    [
        "Europe/Pari",
        "Paris",
        "CEST+2",
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/",
        "Mars/Olympus",
    ],
)
def test_an_unknown_time_zone_is_refused_naming_the_variable(value: str) -> None:
    message = refusal(NOTIFY_TIMEZONE=value)
    assert message.startswith("NOTIFY_TIMEZONE=") and "is not a time zone" in message, message
    assert "Traceback" not in message


def test_a_mistyped_time_zone_gets_a_suggestion() -> None:
    assert "did you mean Europe/Paris?" in refusal(NOTIFY_TIMEZONE="Europe/Pari")


def test_a_mention_is_bounded() -> None:
    assert refusal(NOTIFY_MENTION="@" * 201).startswith("NOTIFY_MENTION is 201 characters long")


def test_the_cli_refuses_a_bad_language_and_zone_with_exit_2(tmp_path: Path) -> None:
    result = run_job(
        "backup",
        env={
            "PGDATABASE": "shop",
            "BACKUP_DESTINATIONS": f"file://{tmp_path}",
            "NOTIFY_LANGUAGE": "de",
            "NOTIFY_TIMEZONE": "Europe/Pari",
        },
        timeout=60,
    )
    assert result.returncode == 2, result.output
    assert "NOTIFY_LANGUAGE='de' must be one of: en, fr" in result.stderr
    assert "NOTIFY_TIMEZONE='Europe/Pari' is not a time zone" in result.stderr
    assert "Traceback" not in result.output


def test_a_configuration_error_is_reported_in_the_configured_language() -> None:
    from backup.config.environment import parse_for_reports

    good = parse_for_reports({"NOTIFY_LANGUAGE": "fr", "NOTIFY_TIMEZONE": "Europe/Paris"})
    assert (good.notify.language, good.notify.timezone) == ("fr", "Europe/Paris")
    # The value that is itself refused falls back to the default, the other is kept.
    bad = parse_for_reports({"NOTIFY_LANGUAGE": "de", "NOTIFY_TIMEZONE": "Europe/Paris"})
    assert (bad.notify.language, bad.notify.timezone) == ("en", "Europe/Paris")
    bad = parse_for_reports({"NOTIFY_LANGUAGE": "fr", "NOTIFY_TIMEZONE": "Nowhere/Land"})
    assert (bad.notify.language, bad.notify.timezone) == ("fr", "UTC")
