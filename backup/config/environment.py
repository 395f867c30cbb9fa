"""Reading the environment: every variable of the contract, ``NAME_FILE`` secrets, validation.

``parse(environ)`` builds the frozen dataclasses of ``model.py`` and collects every problem before
raising one ``ConfigError``; ``backup.config.load`` is the public entry point.
``parse_for_reports(environ)`` reads the same variables leniently when ``parse`` refused them:
the notification and metrics settings that still work, so a configuration error is reported.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from backup.config import clouds, syntax
from backup.config.codec import read_codec
from backup.config.database import read_postgres, read_scale, read_url
from backup.config.destination import Destination
from backup.config.dump_options import read_dump
from backup.config.model import (
    DEFAULT_LOCK_WAIT_TIMEOUT_S,
    DEFAULT_PART_SIZE_MB,
    DEFAULT_STANDBY_MAX_LAG_S,
    DEFAULT_TIMEOUT_S,
    MAX_COUNT,
    MAX_PART_SIZE_MB,
    MIB,
    MIN_PART_SIZE_MB,
    Config,
    LogConfig,
    MetricsConfig,
    NotifyConfig,
    RetentionPolicy,
    RetryConfig,
    StorageConfig,
)
from backup.config.notify_settings import read_notify
from backup.config.prices import read_prices
from backup.config.reader import Reader
from backup.errors import ConfigError

# Bounds: nothing sensible is larger, and every number stays far from what overflows a date
# (BACKUP_RETENTION_DAYS=99999999999 once failed after the backup was committed).
MAX_RETENTION_DAYS = 36_500
MAX_TIMEOUT_S = 7 * 86_400.0
MAX_LOCK_WAIT_S = 86_400.0
MAX_STANDBY_LAG_S = 30 * 86_400.0

PREFIXES = (
    "BACKUP_",
    "B2_",
    "S3_",
    "GCS_",
    "AZURE_STORAGE_",
    "NOTIFY_",
    "TELEGRAM_",
    "PROMETHEUS_",
    "ALERT_",
    "VERIFY_",
    "HEALTHCHECK_",
    "METRICS_",
    "LOG_",
)
"""The job's own prefixes: a variable with one of them that the job does not read is a typo."""


def _storage(r: Reader) -> StorageConfig:
    bucket = r.check("B2_BUCKET_NAME", r.str("B2_BUCKET_NAME"), syntax.bucket_problem)
    destinations = r.csv("BACKUP_DESTINATIONS")
    if not destinations:
        destinations = (f"b2://{bucket}/backups/postgresql",) if bucket else ("file://./backups",)
    schemes = set()
    for url in destinations:
        try:
            schemes.add(Destination.parse(url).scheme)
        except ConfigError as err:
            r.problems.extend(err.problems)
            if err.hint != ConfigError.default_hint:
                r.hints.append(err.hint)
    if len(set(destinations)) != len(destinations):
        r.problems.append("BACKUP_DESTINATIONS lists the same destination twice")
    b2 = clouds.read_b2(r, schemes, bucket)
    s3 = clouds.read_s3(r, schemes)
    part_mb = r.int("BACKUP_PART_SIZE_MB", DEFAULT_PART_SIZE_MB, MIN_PART_SIZE_MB, MAX_PART_SIZE_MB)
    prices = read_prices(r)
    retry = RetryConfig(
        attempts=r.int("BACKUP_RETRY_ATTEMPTS", 5, 1, 100) or 5,
        max_seconds=r.float("BACKUP_RETRY_MAX_SECONDS", 120.0, 0.0, 86_400.0),
        initial_backoff_s=r.float("BACKUP_RETRY_BACKOFF_SECONDS", 1.0, 0.0, 3600.0),
    )
    return StorageConfig(
        destinations=destinations,
        part_size_bytes=(part_mb or DEFAULT_PART_SIZE_MB) * MIB,
        retry=retry,
        b2=b2,
        s3=s3,
        gcs=clouds.read_gcs(r, schemes),
        azure=clouds.read_azure(r, schemes),
        price_per_gb_month=prices[0],
        price_by_scheme=prices[1],
    )


def _retention(r: Reader) -> RetentionPolicy:
    return RetentionPolicy(
        days=r.int("BACKUP_RETENTION_DAYS", 30, 0, MAX_RETENTION_DAYS) or 0,
        keep_min=r.int("BACKUP_KEEP_MIN", 3, 1, MAX_COUNT) or 1,
        keep_daily=r.int("BACKUP_KEEP_DAILY", None, 0, MAX_COUNT),
        keep_weekly=r.int("BACKUP_KEEP_WEEKLY", None, 0, MAX_COUNT),
        keep_monthly=r.int("BACKUP_KEEP_MONTHLY", None, 0, MAX_COUNT),
    )


def parse(environ: Mapping[str, str]) -> Config:
    """Parse the environment; raise one ``ConfigError`` listing every problem found."""
    r = Reader(environ)
    config = _read(r)
    if r.problems:
        raise ConfigError(r.problems, hint="; ".join(dict.fromkeys(r.hints)) or None)
    return replace(config, unknown_variables=tuple(unknown_variables(environ)))


@functools.cache
def known_variables() -> frozenset[str]:
    """Every variable the job reads: the names ``_read`` asks its ``Reader`` for (secrets with
    their ``_FILE`` variant), so the list cannot drift from the code."""
    reader = Reader({})
    _read(reader)
    return frozenset(reader.names)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``(name, suggestion)`` for each variable of ``environ`` (``os.environ`` by default) with
    one of the job's ``PREFIXES`` that the job does not read: a typo, most likely, whose value is
    ignored. ``suggestion`` is the closest known name (difflib), or ``None``."""
    known = known_variables()
    found = []
    for name in sorted(os.environ if environ is None else environ):
        if name.startswith(PREFIXES) and name not in known:
            import difflib  # only for a typo: every run reads the configuration

            close = difflib.get_close_matches(name[:100], sorted(known), n=1, cutoff=0.6)
            found.append((name, close[0] if close else None))
    return found


@dataclass(frozen=True)
class ReportingSettings:
    """What a failure report needs when the configuration as a whole was refused."""

    notify: NotifyConfig
    metrics: MetricsConfig
    host: str
    """The PostgreSQL server as far as it could be read, host:port (never credentials)."""
    secrets: tuple[str, ...]
    """Every secret value that could be read, for the log redaction filter."""


def parse_for_reports(environ: Mapping[str, str] | None = None) -> ReportingSettings:
    """The notification and metrics settings read leniently, for reporting a ``ConfigError``.

    ``environ`` is ``os.environ`` by default. Every variable is read as ``parse`` reads it (same
    defaults), its problems ignored; a channel whose own settings are unusable (a URL that is
    not http(s), a bot token without a chat) is left out, the others are kept.
    """
    config = _read(Reader(os.environ if environ is None else environ))
    notify, metrics = config.notify, config.metrics
    telegram_ok = bool(
        notify.telegram_bot_token and notify.telegram_chat_id and _http(notify.telegram_api_url)
    )
    healthcheck = notify.healthcheck_url
    notify = replace(
        notify,
        telegram_bot_token=notify.telegram_bot_token if telegram_ok else None,
        webhook_urls=tuple(u for u in notify.webhook_urls if _http(u.reveal())),
        healthcheck_url=healthcheck if healthcheck and _http(healthcheck.reveal()) else None,
    )
    pushgateway = metrics.pushgateway_url
    metrics = replace(
        metrics,
        pushgateway_url=pushgateway if _http(pushgateway or "") else None,
        metrics_file=metrics.metrics_file
        if _metrics_file_problem(metrics.metrics_file or "") is None
        else None,
    )
    return ReportingSettings(
        notify=notify,
        metrics=metrics,
        host=config.postgres.display_host,
        secrets=tuple(config.secrets()),
    )


def _http(url: str) -> bool:
    """A URL a notifier or the metrics pusher can send to."""
    return bool(url) and syntax.url_problem(url, ("http", "https"))[1] is None


def _metrics_file_problem(path: str) -> str | None:
    """METRICS_FILE: a file (or none yet) in an existing directory."""
    if not path:
        return None
    target = Path(path)
    try:
        if target.is_dir():
            return f"{path} is a directory: name the file to write"
        if target.exists() and not target.is_file():
            return f"{path} is not a regular file"
        if not target.parent.is_dir():
            return f"the directory {target.parent} does not exist"
    except OSError as err:  # a name too long, a permission denied on the way
        return f"{path} cannot be checked: {err.strerror or err}"
    return None


def _read(r: Reader) -> Config:
    """Every variable read into a ``Config``; the problems found are left in ``r.problems``."""
    postgres = read_postgres(r)
    dump = read_dump(r, () if postgres.all_databases else postgres.databases)
    storage = _storage(r)
    codec = read_codec(r)
    retention = _retention(r)
    notify = read_notify(r)
    pushgateway = r.str("PROMETHEUS_PUSHGATEWAY_URL")
    if pushgateway:
        _, problem = syntax.url_problem(pushgateway, ("http", "https"))
        if problem:
            r.problems.append(f"PROMETHEUS_PUSHGATEWAY_URL {problem}")
    metrics_file = r.str("METRICS_FILE")
    problem = _metrics_file_problem(metrics_file or "")
    if problem:
        r.problems.append(f"METRICS_FILE: {problem}")
    metrics = MetricsConfig(
        pushgateway_url=pushgateway,
        metrics_file=metrics_file,
        job_name=r.str("PROMETHEUS_JOB_NAME", "pgbackup", max_chars=256) or "pgbackup",
    )
    log = LogConfig(
        format=r.choice("LOG_FORMAT", "text", ("text", "json")),
        level=r.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        progress_interval_s=r.float("BACKUP_PROGRESS_SECONDS", 30.0, 0.0, 86_400.0),
    )
    if dump.format == "directory" and codec.age_recipients and dump.dedup_key is None:
        r.problems.append(
            "BACKUP_DEDUP_KEY is required with BACKUP_FORMAT=directory and BACKUP_AGE_RECIPIENTS: "
            "the backup cannot read a key kept encrypted in the destination, and a key kept "
            "plain there would let whoever reads the bucket test what a table holds"
        )
        r.hints.append("set BACKUP_DEDUP_KEY (or BACKUP_DEDUP_KEY_FILE) to 'openssl rand -hex 32'")
    verify = r.choice("BACKUP_VERIFY", "none", ("none", "restore"))
    row_counts = r.choice("BACKUP_ROW_COUNTS", "estimate", ("exact", "estimate", "off"))
    verify_url = r.secret("VERIFY_DATABASE_URL")
    # Checked as DATABASE_URL is (its parameters too), under its own name, before anything runs.
    read_url(r, "VERIFY_DATABASE_URL", verify_url)
    timeout_s = r.duration("BACKUP_TIMEOUT", DEFAULT_TIMEOUT_S, 1.0, MAX_TIMEOUT_S)
    lock_wait_timeout_s = r.duration(
        "BACKUP_LOCK_WAIT_TIMEOUT", DEFAULT_LOCK_WAIT_TIMEOUT_S, 1.0, MAX_LOCK_WAIT_S
    )
    standby_max_lag_s = r.duration(
        "BACKUP_STANDBY_MAX_LAG", DEFAULT_STANDBY_MAX_LAG_S, 0.0, MAX_STANDBY_LAG_S
    )
    return Config(
        postgres=postgres,
        storage=storage,
        codec=codec,
        retention=retention,
        notify=notify,
        metrics=metrics,
        log=log,
        dump=dump,
        verify=verify,
        row_counts=row_counts,
        verify_database_url=verify_url,
        lock_dir=r.str("BACKUP_LOCK_DIR", "/tmp") or "/tmp",
        timeout_s=timeout_s,
        lock_wait_timeout_s=lock_wait_timeout_s,
        standby_max_lag_s=standby_max_lag_s,
        standby_pause_replay=r.bool("BACKUP_STANDBY_PAUSE_REPLAY", False),
        pg_bin_dirs=tuple(
            d for d in (r.str("BACKUP_PG_BIN_DIRS") or "").replace(",", ":").split(":") if d
        ),
        strict_env=r.bool("BACKUP_STRICT_ENV", True),
        scale=read_scale(r),
    )
