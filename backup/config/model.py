"""The configuration model: frozen dataclasses, one per part of the job, and ``Secret``.

Each part of the job receives only its slice of ``Config`` (``PostgresConfig`` for the database
clients, ``StorageConfig`` for the backends, ...). ``environment.py`` fills them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from urllib.parse import urlsplit

from backup.config import notify_urls
from backup.config.scale import ScaleConfig
from backup.errors import ConfigError

MIB = 1024 * 1024
# B2 and S3 both refuse parts under 5 MB (except the last) and allow at most 10,000 parts:
# https://www.backblaze.com/docs/cloud-storage-large-files
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
MIN_PART_SIZE_MB = 5
MAX_PART_SIZE_MB = 5 * 1024
# 8 MiB parts x 2 in flight keeps a backup to S3 or B2 under 100 MB for the whole process tree.
# The parts grow with the backup, so 10,000 parts hold 430 GiB on S3 (every 1,000 parts:
# storage/s3/multipart.py) and 1.6 TiB on B2 (every 250: storage/b2/large_file.py).
DEFAULT_PART_SIZE_MB = 8
# BACKUP_COMPRESSION_THREADS: zstd's own limit is 200 workers; past a few dozen nothing is gained.
MAX_COMPRESSION_THREADS = 64
MAX_COUNT = 10_000
"""The most backups to keep, failures in a row before an alert, ...: a count no one needs more."""
# A run that takes longer than this is stuck, not slow: a few hundred GB dump in well under 6 h.
DEFAULT_TIMEOUT_S = 6 * 3600.0
# pg_dump waits this long for each table's lock before giving up (a table held in ACCESS
# EXCLUSIVE mode by a migration would otherwise hang the run silently).
DEFAULT_LOCK_WAIT_TIMEOUT_S = 300.0
DEFAULT_STANDBY_MAX_LAG_S = 3600.0
# Cleanups leave alone what is younger than BACKUP_TIMEOUT plus this margin.
ORPHAN_MARGIN_S = 3600.0
# STORAGE_PRICE_PER_GB_MONTH's default, for list's cost estimate: Backblaze B2's published
# storage price, $6 per TB and month, i.e. $0.006 per GB (GB = 10^9 bytes, as B2 bills), in
# effect since 3 October 2023 (it was $0.005) and still the price when checked in November 2026:
# https://www.backblaze.com/cloud-storage/pricing
B2_PRICE_PER_GB_MONTH = 0.006
# Far above any object store's price: a larger value is a typo (a price per TB, say).
MAX_PRICE_PER_GB_MONTH = 100.0


class Secret:
    """A secret string that never prints itself; ``reveal()`` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def secret_values(node: object) -> Iterator[Secret]:
    """Every ``Secret`` in ``node``, walked down its dataclasses' fields and its tuples', lists'
    and dicts' items (``Config.secrets``; tests/unit/test_secret_fields.py holds it complete)."""
    if isinstance(node, Secret):
        yield node
    elif is_dataclass(node) and not isinstance(node, type):
        for item in fields(node):
            yield from secret_values(getattr(node, item.name))
    elif isinstance(node, tuple | list | set | frozenset):
        for value in node:
            yield from secret_values(value)
    elif isinstance(node, dict):
        for value in node.values():
            yield from secret_values(value)


@dataclass(frozen=True)
class PostgresConfig:
    host: str | None = None
    port: str | None = None
    user: str | None = None
    password: Secret | None = None
    database: str | None = None
    databases: tuple[str, ...] = ()
    """Databases to back up; empty with ``all_databases`` means every non-template one."""
    all_databases: bool = False
    extra_env: tuple[tuple[str, str], ...] = ()
    """Other libpq variables (PGSSLMODE, PGSSLROOTCERT, ...) passed through to children."""

    def libpq_env(self, database: str | None = None) -> dict[str, str]:
        """Environment for a child process: libpq variables, password included (never argv)."""
        env = dict(self.extra_env)
        for name, value in (
            ("PGHOST", self.host),
            ("PGPORT", self.port),
            ("PGUSER", self.user),
            ("PGDATABASE", database or self.database),
        ):
            if value:
                env[name] = value
        if self.password:
            env["PGPASSWORD"] = self.password.reveal()
        return env

    def require_databases(self) -> None:
        """Refuse (exit 2) when no database is named: backing up libpq's default database
        (usually the empty ``postgres``) and calling it a success is how backups go missing."""
        if not self.databases and not self.all_databases:
            raise ConfigError(
                "no database to back up is named",
                hint="set BACKUP_DATABASES (a comma list, or 'all'), PGDATABASE, or the "
                "database in DATABASE_URL's path (postgresql://user@host/DBNAME)",
            )

    @property
    def display_host(self) -> str:
        service = dict(self.extra_env).get("PGSERVICE")
        if service and not self.host:  # the service file names the server
            return f"service {service}" + (f" port {self.port}" if self.port else "")
        return f"{self.host or 'localhost'}:{self.port or '5432'}"


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = 5
    max_seconds: float = 120.0
    initial_backoff_s: float = 1.0


@dataclass(frozen=True)
class B2Config:
    key_id: str | None = None
    application_key: Secret | None = None
    bucket_name: str | None = None
    sse_b2: bool = False


@dataclass(frozen=True)
class S3Config:
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    region: str | None = None
    endpoint_url: str | None = None
    sse: str | None = None


@dataclass(frozen=True)
class GCSConfig:
    """gs:// destinations (``config/clouds.py`` reads and checks them)."""

    credentials_file: str | None = None
    """GOOGLE_APPLICATION_CREDENTIALS: a service-account key file, checked to be one."""
    endpoint_url: str | None = None
    """GCS_ENDPOINT_URL (a private endpoint) or STORAGE_EMULATOR_HOST (an emulator)."""
    private_key: Secret | None = None
    """The key file's ``private_key``: never used from here (google-auth reads the file), only
    known so the log redaction masks it."""
    credentials_json: Secret | None = None
    """The service-account key itself: GOOGLE_APPLICATION_CREDENTIALS holding the JSON, or
    the file named by GOOGLE_APPLICATION_CREDENTIALS_FILE; checked like a key file."""
    emulator: bool = False
    """STORAGE_EMULATOR_HOST named the endpoint: requests go unauthenticated."""

    @property
    def auth(self) -> str:
        """How requests are authenticated: ``key_file``, ``key_json``, ``anonymous`` (an
        emulator) or ``default`` (Application Default Credentials: GKE Workload Identity, a
        VM's service account, gcloud's login)."""
        if self.emulator:
            return "anonymous"
        if self.credentials_json:
            return "key_json"
        return "key_file" if self.credentials_file else "default"

    def key_secrets(self) -> list[str]:
        """The private key inside ``credentials_json`` (its lines too), for the redaction
        filter: a log line may quote the key without the JSON around it."""
        if not self.credentials_json:
            return []
        try:
            key = json.loads(self.credentials_json.reveal()).get("private_key")
        except (ValueError, AttributeError):
            return []
        if not isinstance(key, str):
            return []
        lines = [line.strip() for line in key.splitlines()]
        return [key, *(line for line in lines if len(line) >= 8 and not line.startswith("-"))]


@dataclass(frozen=True)
class AzureConfig:
    """azure:// (and az://) destinations (``config/clouds.py`` reads and checks them): a
    connection string, or an account name with its key, a SAS token, or alone (the pod's or
    machine's identity through azure-identity's ``DefaultAzureCredential``)."""

    connection_string: Secret | None = None
    account_name: str | None = None
    account_key: Secret | None = None
    sas_token: Secret | None = None
    endpoint_url: str | None = None
    """AZURE_STORAGE_ENDPOINT: the Blob service URL (Azurite, a sovereign cloud, a private
    endpoint); default https://<account>.blob.core.windows.net."""

    @property
    def uses_identity(self) -> bool:
        """No connection string, key nor SAS: azure-identity's ``DefaultAzureCredential``."""
        return not (self.connection_string or self.account_key or self.sas_token)


@dataclass(frozen=True)
class StorageConfig:
    destinations: tuple[str, ...]
    part_size_bytes: int = DEFAULT_PART_SIZE_MB * MIB
    parts_in_flight: int = 2
    retry: RetryConfig = field(default_factory=RetryConfig)
    b2: B2Config = field(default_factory=B2Config)
    s3: S3Config = field(default_factory=S3Config)
    gcs: GCSConfig = field(default_factory=GCSConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    price_per_gb_month: float = B2_PRICE_PER_GB_MONTH
    """STORAGE_PRICE_PER_GB_MONTH: US dollars per GB (10^9 bytes) and month, for every
    destination (or those whose scheme ``price_by_scheme`` does not name: its ``default``);
    ``list`` estimates the monthly cost with it (0: no estimate)."""
    price_by_scheme: tuple[tuple[str, float], ...] = ()
    """STORAGE_PRICE_PER_GB_MONTH's scheme=price pairs (``config/prices.py``): ``az`` for
    ``azure://`` and ``az://``."""

    def price_for(self, url: str) -> float:
        """The price of the destination ``url`` (0: no estimate)."""
        scheme = url.partition("://")[0].lower()
        scheme = "az" if scheme == "azure" else scheme
        return dict(self.price_by_scheme).get(scheme, self.price_per_gb_month)


@dataclass(frozen=True)
class CodecConfig:
    compression: str = "zstd"
    level: int | None = None
    threads: int = 0
    """zstd worker threads (BACKUP_COMPRESSION_THREADS): 0 compresses in the thread that reads
    the dump; N >= 1 hands the work to N workers. gzip ignores it."""
    age_recipients: tuple[str, ...] = ()
    age_passphrase: Secret | None = None
    age_identity: Secret | None = None

    @property
    def encrypted(self) -> bool:
        return bool(self.age_recipients or self.age_passphrase)


@dataclass(frozen=True)
class RetentionPolicy:
    days: int = 30
    keep_min: int = 3
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None


@dataclass(frozen=True)
class NotifyConfig:
    telegram_bot_token: Secret | None = None
    telegram_chat_id: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    webhook_urls: tuple[Secret, ...] = ()
    healthcheck_url: Secret | None = None
    apprise_urls: tuple[Secret, ...] = ()
    """NOTIFY_URLS, one apprise URL each, every one accepted by apprise (notify_urls.py)."""
    notify_on: str = "always"
    alert_after_failures: int = 2
    timeout_s: float = 10.0
    attempts: int = 3
    language: str = "en"
    """NOTIFY_LANGUAGE: the language of every notification (``backup/languages/``)."""
    timezone: str = "UTC"
    """NOTIFY_TIMEZONE: the IANA time zone of the dates in notifications."""
    mention: str | None = None
    """NOTIFY_MENTION: text put in front of escalation messages (``@alice``, ``<!channel>``)."""


@dataclass(frozen=True)
class MetricsConfig:
    pushgateway_url: str | None = None
    metrics_file: str | None = None
    job_name: str = "pgbackup"


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"
    level: str = "INFO"
    progress_interval_s: float = 30.0


@dataclass(frozen=True)
class DumpConfig:
    """What gets dumped (``config/dump_options.py`` reads it)."""

    pg_dump_args: tuple[str, ...] = ()
    """BACKUP_PG_DUMP_ARGS: extra pg_dump options, checked; database dumps only."""
    exclude_table_data: tuple[str, ...] = ()
    """BACKUP_EXCLUDE_TABLE_DATA: pg_dump patterns, each an ``--exclude-table-data``."""
    exclude_databases: tuple[str, ...] = ()
    """BACKUP_EXCLUDE_DATABASES: names left out of the databases backed up."""
    format: str = "custom"
    """BACKUP_FORMAT: ``custom`` (one pg_dump -Fc stream) or ``directory`` (pg_dump -Fd, one
    content object per file, unchanged files stored once)."""
    jobs: int = 1
    """BACKUP_JOBS: pg_dump -j and pg_restore -j workers, parallel uploads and downloads of a
    directory-format backup."""
    dedup_key: Secret | None = None
    """BACKUP_DEDUP_KEY: the key of the directory format's content addresses (a secret)."""
    pack_below_bytes: int = 1024 * 1024
    """BACKUP_PACK_BELOW_KB: directory format, files smaller than this go into packs (0: none)."""

    def pg_dump_options(self) -> tuple[str, ...]:
        """Everything added to a database's pg_dump argv."""
        excluded = tuple(f"--exclude-table-data={p}" for p in self.exclude_table_data)
        return (*self.pg_dump_args, *excluded)


@dataclass(frozen=True)
class Config:
    postgres: PostgresConfig
    storage: StorageConfig
    codec: CodecConfig
    retention: RetentionPolicy
    notify: NotifyConfig
    metrics: MetricsConfig
    log: LogConfig
    verify: str = "none"
    row_counts: str = "estimate"
    verify_database_url: Secret | None = None
    lock_dir: str = "/tmp"
    pg_bin_dirs: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    """BACKUP_TIMEOUT: the longest a whole run may take before it is aborted (exit 3)."""
    lock_wait_timeout_s: float = DEFAULT_LOCK_WAIT_TIMEOUT_S
    """BACKUP_LOCK_WAIT_TIMEOUT: pg_dump's --lock-wait-timeout for each table lock."""
    standby_max_lag_s: float = DEFAULT_STANDBY_MAX_LAG_S
    """BACKUP_STANDBY_MAX_LAG: on a hot standby, the most its data may lag (0: no limit)."""
    standby_pause_replay: bool = False
    """BACKUP_STANDBY_PAUSE_REPLAY: on a hot standby, WAL replay paused for each dump."""
    dump: DumpConfig = field(default_factory=DumpConfig)
    strict_env: bool = True
    """BACKUP_STRICT_ENV: ``check`` fails on ``unknown_variables`` (else it only warns)."""
    unknown_variables: tuple[tuple[str, str | None], ...] = ()
    """(name, closest known name or None) for each variable with the job's prefixes that the
    job does not read: a typo whose value is ignored (``environment.unknown_variables``)."""
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    """BACKUP_PARALLEL_DATABASES and the shards (BACKUP_SHARDS)."""

    @property
    def orphan_min_age_s(self) -> float:
        """How old an unfinished upload or a data object without a manifest must be before a
        cleanup may remove it: longer than any run may last, so never a live run's upload."""
        return self.timeout_s + ORPHAN_MARGIN_S

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter: every ``Secret`` of the tree
        (``secret_values``: nothing to list by hand, so none is forgotten), and the parts of
        some that a log line may quote alone."""
        revealed = [v.reveal() for v in secret_values(self) if v]
        revealed += self.storage.gcs.key_secrets()
        for url in self.notify.apprise_urls:
            revealed += notify_urls.secret_parts(url.reveal())
        # A webhook or ping URL's path is its secret (hooks.slack.com/services/T/B/XXXX); HTTP
        # client debug lines print the path alone, so the paths are secrets too.
        for url in (*self.notify.webhook_urls, self.notify.healthcheck_url):
            if url:
                try:
                    path = urlsplit(url.reveal()).path
                except ValueError:  # a URL refused by the configuration, read leniently
                    continue
                if len(path.strip("/")) >= 8:
                    revealed.append(path)
        return revealed
