"""Reading the environment: every variable of the contract, ``NAME_FILE`` secrets, validation.

``parse(environ)`` builds the frozen dataclasses of ``model.py`` and collects every problem before
raising one ``ConfigError``; ``backup.config.load`` is the public entry point.
``parse_for_reports(environ)`` reads the same variables leniently when ``parse`` refused them:
the notification and metrics settings that still work, so a configuration error is reported.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from backup.config.destination import Destination
from backup.config.model import (
    DEFAULT_LOCK_WAIT_TIMEOUT_S,
    DEFAULT_PART_SIZE_MB,
    DEFAULT_TIMEOUT_S,
    MAX_PART_SIZE_MB,
    MIB,
    MIN_PART_SIZE_MB,
    B2Config,
    CodecConfig,
    Config,
    LogConfig,
    MetricsConfig,
    NotifyConfig,
    PostgresConfig,
    RetentionPolicy,
    RetryConfig,
    S3Config,
    Secret,
    StorageConfig,
)
from backup.errors import ConfigError

DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

LIBPQ_PASSTHROUGH = (
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGCONNECT_TIMEOUT",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGTARGETSESSIONATTRS",
)


class Reader:
    """Reads variables and collects every problem instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.problems: list[str] = []

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value or default

    def secret(self, name: str) -> Secret | None:
        """``NAME`` or the contents of the file named by ``NAME_FILE`` (not both)."""
        direct = self.env.get(name, "")
        path = self.env.get(f"{name}_FILE", "").strip()
        if direct and path:
            self.problems.append(f"{name} and {name}_FILE are both set: keep one")
            return None
        if path:
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except OSError as err:
                self.problems.append(f"{name}_FILE: cannot read {path}: {err.strerror}")
                return None
            if not value:
                self.problems.append(f"{name}_FILE: {path} is empty")
                return None
            return Secret(value)
        direct = direct.strip()
        return Secret(direct) if direct else None

    def int(
        self, name: str, default: int | None, minimum: int = 0, maximum: int | None = None
    ) -> int | None:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a whole number")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.problems.append(f"{name}={value} must be {bound}")
            return default
        return value

    def float(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a number")
            return default
        if value < minimum:
            self.problems.append(f"{name}={value} must be >= {minimum}")
            return default
        return value

    def duration(self, name: str, default_s: float, minimum_s: float = 0.0) -> float:
        """Seconds: a plain number of seconds, or a number with ``s``, ``m`` or ``h``."""
        raw = self.str(name)
        if raw is None:
            return default_s
        text = raw.lower().replace(" ", "")
        unit = 1.0
        if text and text[-1] in DURATION_UNITS:
            unit, text = DURATION_UNITS[text[-1]], text[:-1]
        try:
            value = float(text) * unit
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a duration (e.g. 90s, 30m, 6h)")
            return default_s
        if not math.isfinite(value) or value < minimum_s:
            self.problems.append(f"{name}={raw!r} must be at least {minimum_s:g} seconds")
            return default_s
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.str(name)
        if raw is None:
            return default
        value = raw.lower()
        if value not in choices:
            self.problems.append(f"{name}={raw!r} must be one of: {', '.join(choices)}")
            return default
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        raw = self.str(name)
        if raw is None:
            return default
        value = raw.lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={raw!r} must be true or false")
        return default

    def csv(self, name: str) -> tuple[str, ...]:
        raw = self.str(name) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())


def _postgres(r: Reader) -> PostgresConfig:
    host, port, user = r.str("PGHOST"), r.str("PGPORT"), r.str("PGUSER")
    password, database = r.secret("PGPASSWORD"), r.str("PGDATABASE")
    extra = {name: r.env[name] for name in LIBPQ_PASSTHROUGH if r.env.get(name)}
    url = r.secret("DATABASE_URL")
    if url:
        parts = urlsplit(url.reveal())
        if parts.scheme not in ("postgres", "postgresql"):
            r.problems.append("DATABASE_URL must start with postgresql:// or postgres://")
        else:
            # The URL is split into libpq variables so the password travels in the child's
            # environment, never in its argv.
            try:
                url_port = str(parts.port) if parts.port else None
            except ValueError:
                r.problems.append("DATABASE_URL has an invalid port")
                url_port = None
            host = unquote(parts.hostname) if parts.hostname else host
            port = url_port or port
            user = unquote(parts.username) if parts.username else user
            if parts.password:
                password = Secret(unquote(parts.password))
            if parts.path.strip("/"):
                database = unquote(parts.path.strip("/"))
            for key, value in parse_qsl(parts.query):
                env_name = {
                    "sslmode": "PGSSLMODE",
                    "sslrootcert": "PGSSLROOTCERT",
                    "sslcert": "PGSSLCERT",
                    "sslkey": "PGSSLKEY",
                    "connect_timeout": "PGCONNECT_TIMEOUT",
                    "application_name": "PGAPPNAME",
                    "options": "PGOPTIONS",
                }.get(key)
                if env_name:
                    extra[env_name] = value
    if port is not None and not port.isdigit():
        r.problems.append(f"PGPORT={port!r} is not a port number")
    listed = r.csv("BACKUP_DATABASES")
    all_databases = len(listed) == 1 and listed[0].lower() == "all"
    if all_databases:
        databases: tuple[str, ...] = ()
    elif listed:
        if any(name.lower() == "all" for name in listed):
            r.problems.append("BACKUP_DATABASES: 'all' cannot be combined with names")
        databases = tuple(dict.fromkeys(listed))
    else:
        # No libpq default (the database named like the user, often the empty "postgres"):
        # with none named, the commands that back up refuse to guess (require_databases).
        databases = (database,) if database else ()
    return PostgresConfig(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        databases=databases,
        all_databases=all_databases,
        extra_env=tuple(sorted(extra.items())),
    )


def _storage(r: Reader) -> StorageConfig:
    bucket = r.str("B2_BUCKET_NAME")
    destinations = r.csv("BACKUP_DESTINATIONS")
    if not destinations:
        destinations = (f"b2://{bucket}/backups/postgresql",) if bucket else ("file://./backups",)
    schemes = set()
    for url in destinations:
        try:
            schemes.add(Destination.parse(url).scheme)
        except ConfigError as err:
            r.problems.extend(err.problems)
    if len(set(destinations)) != len(destinations):
        r.problems.append("BACKUP_DESTINATIONS lists the same destination twice")
    b2 = B2Config(
        key_id=r.str("B2_KEY_ID"),
        application_key=r.secret("B2_APPLICATION_KEY"),
        bucket_name=bucket,
        sse_b2=r.bool("B2_SSE", False),
    )
    if "b2" in schemes:
        for name, value in (("B2_KEY_ID", b2.key_id), ("B2_APPLICATION_KEY", b2.application_key)):
            if not value:
                r.problems.append(f"{name} is required for b2:// destinations")
    s3 = S3Config(
        access_key_id=r.str("AWS_ACCESS_KEY_ID"),
        secret_access_key=r.secret("AWS_SECRET_ACCESS_KEY"),
        session_token=r.secret("AWS_SESSION_TOKEN"),
        region=r.str("AWS_REGION") or r.str("AWS_DEFAULT_REGION"),
        endpoint_url=r.str("S3_ENDPOINT_URL"),
        sse=r.str("S3_SSE"),
    )
    if s3.endpoint_url and not s3.endpoint_url.startswith(("http://", "https://")):
        r.problems.append("S3_ENDPOINT_URL must start with http:// or https://")
    part_mb = r.int("BACKUP_PART_SIZE_MB", DEFAULT_PART_SIZE_MB, MIN_PART_SIZE_MB, MAX_PART_SIZE_MB)
    retry = RetryConfig(
        attempts=r.int("BACKUP_RETRY_ATTEMPTS", 5, 1, 100) or 5,
        max_seconds=r.float("BACKUP_RETRY_MAX_SECONDS", 120.0, 0.0),
        initial_backoff_s=r.float("BACKUP_RETRY_BACKOFF_SECONDS", 1.0, 0.0),
    )
    return StorageConfig(
        destinations=destinations,
        part_size_bytes=(part_mb or DEFAULT_PART_SIZE_MB) * MIB,
        retry=retry,
        b2=b2,
        s3=s3,
    )


def _codec(r: Reader) -> CodecConfig:
    compression = r.choice("BACKUP_COMPRESSION", "zstd", ("zstd", "gzip", "none"))
    limits = {"zstd": (1, 22), "gzip": (1, 9), "none": (0, 0)}[compression]
    level = r.int("BACKUP_COMPRESSION_LEVEL", None, limits[0], limits[1])
    recipients = r.csv("BACKUP_AGE_RECIPIENTS")
    recipients_file = r.str("BACKUP_AGE_RECIPIENTS_FILE")
    if recipients_file:
        try:
            lines = Path(recipients_file).read_text(encoding="utf-8").splitlines()
            recipients += tuple(
                line.strip() for line in lines if line.strip() and not line.startswith("#")
            )
        except OSError as err:
            r.problems.append(f"BACKUP_AGE_RECIPIENTS_FILE: cannot read it: {err.strerror}")
    passphrase = r.secret("BACKUP_AGE_PASSPHRASE")
    if recipients and passphrase:
        r.problems.append("BACKUP_AGE_RECIPIENTS and BACKUP_AGE_PASSPHRASE are both set: keep one")
    for recipient in recipients:
        if not recipient.startswith(("age1", "ssh-ed25519 ", "ssh-rsa ")):
            r.problems.append(
                f"BACKUP_AGE_RECIPIENTS: {recipient[:12]}... is not an age or ssh public key"
            )
    return CodecConfig(
        compression=compression,
        level=level,
        age_recipients=recipients,
        age_passphrase=passphrase,
        age_identity=r.secret("BACKUP_AGE_IDENTITY"),
    )


def _retention(r: Reader) -> RetentionPolicy:
    return RetentionPolicy(
        days=r.int("BACKUP_RETENTION_DAYS", 30, 0) or 0,
        keep_min=r.int("BACKUP_KEEP_MIN", 3, 1) or 1,
        keep_daily=r.int("BACKUP_KEEP_DAILY", None, 0),
        keep_weekly=r.int("BACKUP_KEEP_WEEKLY", None, 0),
        keep_monthly=r.int("BACKUP_KEEP_MONTHLY", None, 0),
    )


def _notify(r: Reader) -> NotifyConfig:
    token = r.secret("TELEGRAM_BOT_TOKEN")
    chat = r.str("TELEGRAM_CHAT_ID") or r.str("ADMIN_USER_ID")
    if token and not chat:
        r.problems.append("TELEGRAM_BOT_TOKEN is set but ADMIN_USER_ID / TELEGRAM_CHAT_ID is not")
    webhooks = r.secret("NOTIFY_WEBHOOK_URL")
    webhook_urls = tuple(
        Secret(u.strip()) for u in (webhooks.reveal() if webhooks else "").split(",") if u.strip()
    )
    healthcheck = r.secret("HEALTHCHECK_URL")
    api_url = r.str("TELEGRAM_API_URL", "https://api.telegram.org") or ""
    for name, value in (
        ("TELEGRAM_API_URL", api_url),
        ("HEALTHCHECK_URL", healthcheck.reveal() if healthcheck else ""),
        *(("NOTIFY_WEBHOOK_URL", u.reveal()) for u in webhook_urls),
    ):
        if value and not value.startswith(("http://", "https://")):
            r.problems.append(f"{name} must be an http:// or https:// URL")
    return NotifyConfig(
        telegram_bot_token=token,
        telegram_chat_id=chat,
        telegram_api_url=api_url.rstrip("/"),
        webhook_urls=webhook_urls,
        healthcheck_url=healthcheck,
        notify_on=r.choice("NOTIFY_ON", "always", ("always", "failure")),
        alert_after_failures=r.int("ALERT_AFTER_FAILURES", 2, 1) or 2,
        timeout_s=r.float("NOTIFY_TIMEOUT_SECONDS", 10.0, 0.1),
    )


def parse(environ: Mapping[str, str]) -> Config:
    """Parse the environment; raise one ``ConfigError`` listing every problem found."""
    r = Reader(environ)
    config = _read(r)
    if r.problems:
        raise ConfigError(r.problems)
    return config


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
    metrics = replace(metrics, pushgateway_url=pushgateway if _http(pushgateway or "") else None)
    return ReportingSettings(
        notify=notify,
        metrics=metrics,
        host=config.postgres.display_host,
        secrets=tuple(config.secrets()),
    )


def _http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _read(r: Reader) -> Config:
    """Every variable read into a ``Config``; the problems found are left in ``r.problems``."""
    postgres = _postgres(r)
    storage = _storage(r)
    codec = _codec(r)
    retention = _retention(r)
    notify = _notify(r)
    pushgateway = r.str("PROMETHEUS_PUSHGATEWAY_URL")
    if pushgateway and not pushgateway.startswith(("http://", "https://")):
        r.problems.append("PROMETHEUS_PUSHGATEWAY_URL must be an http:// or https:// URL")
    metrics = MetricsConfig(
        pushgateway_url=pushgateway,
        metrics_file=r.str("METRICS_FILE"),
        job_name=r.str("PROMETHEUS_JOB_NAME", "pgbackup") or "pgbackup",
    )
    log = LogConfig(
        format=r.choice("LOG_FORMAT", "text", ("text", "json")),
        level=r.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        progress_interval_s=r.float("BACKUP_PROGRESS_SECONDS", 30.0, 0.0),
    )
    verify = r.choice("BACKUP_VERIFY", "none", ("none", "restore"))
    row_counts = r.choice("BACKUP_ROW_COUNTS", "estimate", ("exact", "estimate", "off"))
    verify_url = r.secret("VERIFY_DATABASE_URL")
    if verify_url and not verify_url.reveal().startswith(("postgres://", "postgresql://")):
        r.problems.append("VERIFY_DATABASE_URL must start with postgresql://")
    timeout_s = r.duration("BACKUP_TIMEOUT", DEFAULT_TIMEOUT_S, 1.0)
    lock_wait_timeout_s = r.duration("BACKUP_LOCK_WAIT_TIMEOUT", DEFAULT_LOCK_WAIT_TIMEOUT_S, 1.0)
    return Config(
        postgres=postgres,
        storage=storage,
        codec=codec,
        retention=retention,
        notify=notify,
        metrics=metrics,
        log=log,
        verify=verify,
        row_counts=row_counts,
        verify_database_url=verify_url,
        lock_dir=r.str("BACKUP_LOCK_DIR", "/tmp") or "/tmp",
        timeout_s=timeout_s,
        lock_wait_timeout_s=lock_wait_timeout_s,
        pg_bin_dirs=tuple(
            d for d in (r.str("BACKUP_PG_BIN_DIRS") or "").replace(",", ":").split(":") if d
        ),
    )
