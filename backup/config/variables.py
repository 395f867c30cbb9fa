"""The table of every environment variable: name, default, meaning, group, and the commands
that use it. ``--help`` shows it (each command's epilog lists the variables that command uses,
the top-level ``--help`` all of them); it is text only and never reads the environment.

A test holds it equal to ``environment.known_variables()`` (what the code reads), and
README's configuration table to it: a variable added to the code without a row here fails.
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass

from backup import languages

BACKUP = "backup"
LIST = "list"
RESTORE = "restore"
VERIFY = "verify"
PRUNE = "prune"
STATUS = "status"
CHECK = "check"
CONTENTS = "contents"

EVERY = frozenset({BACKUP, LIST, RESTORE, VERIFY, PRUNE, STATUS, CHECK, CONTENTS})
# Connect to the source server (list and contents do not: they read stored backups only).
SERVER = EVERY - {LIST, CONTENTS}
# Tell how they ended: notifications and metrics (check: --notify and METRICS_FILE's directory).
TOLD = frozenset({BACKUP, VERIFY, PRUNE, STATUS, CHECK})
# Read stored backups back.
READERS = frozenset({BACKUP, RESTORE, VERIFY, CHECK, CONTENTS})

# The groups, in the order --help shows them.
GROUPS = (
    "database",
    "destinations",
    "compression and encryption",
    "verification",
    "retention",
    "notifications",
    "metrics",
    "logging and progress",
    "running",
)

# --help's width (argparse's too): readable in a terminal of 90 columns, whatever $COLUMNS says.
WIDTH = 88
NAME_COLUMN = 32


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    """The value used when unset, as written in the environment; "" when there is none (or
    it is not a plain value: then ``meaning`` says it)."""
    meaning: str
    group: str
    commands: frozenset[str]
    secret: bool = False
    """Also read from the file ``NAME_FILE`` names."""

    def names(self) -> tuple[str, ...]:
        return (self.name, f"{self.name}_FILE") if self.secret else (self.name,)


def _v(
    name: str,
    default: str,
    meaning: str,
    group: str,
    commands: frozenset[str],
    secret: bool = False,
) -> Variable:
    return Variable(name, default, meaning, group, frozenset(commands), secret)


_DB = "database"
_DEST = "destinations"
_CODEC = "compression and encryption"
_VERIFY = "verification"
_KEEP = "retention"
_NOTIFY = "notifications"
_METRICS = "metrics"
_LOG = "logging and progress"
_RUN = "running"

_LIBPQ = "passed on to pg_dump, pg_restore, psql and the job's own connections"

# fmt: off
VARIABLES: tuple[Variable, ...] = (
    # database
    _v("PGHOST", "", "the source server (host, IP or socket directory)", _DB, SERVER),
    _v("PGPORT", "", "its port (libpq's default, 5432)", _DB, SERVER),
    _v("PGUSER", "", "the role the job connects as", _DB, SERVER),
    _v("PGPASSWORD", "", "its password (sent to children in their environment only)", _DB,
       SERVER, secret=True),
    _v("PGDATABASE", "", "the database to back up when BACKUP_DATABASES is unset; the "
       "database of 'latest' for restore and verify", _DB, SERVER),
    _v("DATABASE_URL", "", "postgresql://user:pass@host:port/db?sslmode=...: its parts win "
       "over the PG* variables", _DB, SERVER, secret=True),
    _v("BACKUP_DATABASES", "", "comma list of databases, or 'all' (plus roles and "
       "tablespaces); default: DATABASE_URL's or PGDATABASE", _DB,
       frozenset({BACKUP, PRUNE, STATUS, CHECK})),
    _v("BACKUP_EXCLUDE_DATABASES", "", "comma list of databases left out of 'all'", _DB,
       frozenset({BACKUP, PRUNE, STATUS, CHECK})),
    _v("BACKUP_PG_DUMP_ARGS", "", "extra pg_dump options (-T public.big --no-owner); the "
       "pipeline's, the connection's and -s/-a refused", _DB, frozenset({BACKUP, CHECK})),
    _v("BACKUP_EXCLUDE_TABLE_DATA", "", "comma list of table patterns dumped without rows",
       _DB, frozenset({BACKUP, CHECK})),
    _v("BACKUP_FORMAT", "custom", "custom (one pg_dump -Fc object) or directory (pg_dump -Fd: "
       "one object per table, unchanged tables stored once)", _DB, frozenset({BACKUP, CHECK})),
    _v("BACKUP_JOBS", "1", "1-64: pg_dump -j / pg_restore -j workers and parallel transfers "
       "of a directory-format backup", _DB, frozenset({BACKUP, RESTORE, VERIFY, CHECK})),
    _v("BACKUP_DEDUP_KEY", "", "directory format: the key of the content addresses; required "
       "with BACKUP_AGE_RECIPIENTS", _DB, frozenset({BACKUP, CHECK}), secret=True),
    _v("BACKUP_PACK_BELOW_KB", "1024", "0-8192: directory format, table files smaller than this "
       "are stored several to a pack object (read back by range); 0: one object per file",
       _DB, frozenset({BACKUP, CHECK})),
    _v("PGSSLMODE", "", _LIBPQ, _DB, SERVER),
    _v("PGSSLROOTCERT", "", _LIBPQ, _DB, SERVER),
    _v("PGSSLCERT", "", _LIBPQ, _DB, SERVER),
    _v("PGSSLKEY", "", _LIBPQ, _DB, SERVER),
    _v("PGOPTIONS", "", _LIBPQ, _DB, SERVER),
    _v("PGAPPNAME", "", _LIBPQ, _DB, SERVER),
    _v("PGPASSFILE", "", _LIBPQ, _DB, SERVER),
    _v("PGSERVICE", "", _LIBPQ, _DB, SERVER),
    _v("PGSERVICEFILE", "", _LIBPQ, _DB, SERVER),
    _v("PGTARGETSESSIONATTRS", "", _LIBPQ, _DB, SERVER),
    _v("PGCONNECT_TIMEOUT", "", _LIBPQ + "; 10 s for the job's own connections", _DB, SERVER),
    _v("BACKUP_PG_BIN_DIRS", "", "extra directories (:-separated) searched for pg_dump, "
       "pg_restore and psql", _DB, frozenset({BACKUP, RESTORE, VERIFY, CHECK, CONTENTS})),
    # destinations
    _v("BACKUP_DESTINATIONS", "file://./backups", "comma list of b2://bucket/prefix, "
       "s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix, file:///path "
       "(b2://$B2_BUCKET_NAME/backups/postgresql when "
       "B2_BUCKET_NAME is set)", _DEST, EVERY),
    _v("B2_KEY_ID", "", "Backblaze B2 key ID (b2:// destinations)", _DEST, EVERY),
    _v("B2_APPLICATION_KEY", "", "Backblaze B2 application key", _DEST, EVERY, secret=True),
    _v("B2_BUCKET_NAME", "", "the bucket of the default destination", _DEST, EVERY),
    _v("B2_SSE", "false", "true: SSE-B2 server-side encryption of each upload", _DEST,
       frozenset({BACKUP, CHECK})),
    _v("AWS_ACCESS_KEY_ID", "", "S3 key (else botocore's own chain: instance role, IRSA...)",
       _DEST, EVERY),
    _v("AWS_SECRET_ACCESS_KEY", "", "S3 secret key", _DEST, EVERY, secret=True),
    _v("AWS_SESSION_TOKEN", "", "with temporary S3 keys", _DEST, EVERY, secret=True),
    _v("AWS_REGION", "", "the bucket's region (auto for R2); wins over AWS_DEFAULT_REGION",
       _DEST, EVERY),
    _v("AWS_DEFAULT_REGION", "", "the bucket's region when AWS_REGION is unset", _DEST, EVERY),
    _v("S3_ENDPOINT_URL", "", "http(s) endpoint of a non-AWS S3 store (MinIO, R2, Wasabi...)",
       _DEST, EVERY),
    _v("S3_SSE", "", "server-side encryption of each upload: AES256, aws:kms, aws:kms:dsse",
       _DEST, frozenset({BACKUP, CHECK})),
    _v("GOOGLE_APPLICATION_CREDENTIALS", "", "gs:// destinations: the path of a "
       "service-account key file, or its JSON; unset: Application Default Credentials "
       "(GKE Workload Identity)", _DEST, EVERY, secret=True),
    _v("GCS_ENDPOINT_URL", "", "http(s) endpoint of a private GCS endpoint (same "
       "credentials)", _DEST, EVERY),
    _v("STORAGE_EMULATOR_HOST", "", "host:port or URL of a GCS emulator (requests "
       "unauthenticated)", _DEST, EVERY),
    _v("AZURE_STORAGE_CONNECTION_STRING", "", "azure:// destinations: the storage account's "
       "connection string (or the three below)", _DEST, EVERY, secret=True),
    _v("AZURE_STORAGE_ACCOUNT", "", "the storage account name (with AZURE_STORAGE_KEY or "
       "AZURE_STORAGE_SAS_TOKEN; alone: the workload or managed identity)", _DEST, EVERY),
    _v("AZURE_STORAGE_KEY", "", "an access key of that account", _DEST, EVERY, secret=True),
    _v("AZURE_STORAGE_SAS_TOKEN", "", "a SAS token instead of the key", _DEST, EVERY,
       secret=True),
    _v("AZURE_STORAGE_ENDPOINT", "", "the Blob service URL (default "
       "https://ACCOUNT.blob.core.windows.net; Azurite, sovereign clouds)", _DEST, EVERY),
    _v("BACKUP_PART_SIZE_MB", "8", "first upload part size for B2, S3, GCS and Azure "
       "(5-5120), growing "
       "with the backup; memory is about part size x 2 per destination", _DEST,
       frozenset({BACKUP})),
    _v("BACKUP_RETRY_ATTEMPTS", "5", "tries per request or part (never of the whole dump)",
       _DEST, EVERY),
    _v("BACKUP_RETRY_MAX_SECONDS", "120", "no new try this many seconds after the first",
       _DEST, EVERY),
    _v("BACKUP_RETRY_BACKOFF_SECONDS", "1", "the first wait between tries (then longer)",
       _DEST, EVERY),
    _v("STORAGE_PRICE_PER_GB_MONTH", "0.006", "US$ per GB (10^9 bytes) and month for list's "
       "cost estimate: one number, or per scheme (gs=0.020,az=0.018,default=0.006); default "
       "B2's price; 0: no estimate", _DEST,
       frozenset({LIST})),
    # compression and encryption
    _v("BACKUP_COMPRESSION", "zstd", "zstd, gzip or none", _CODEC, frozenset({BACKUP})),
    _v("BACKUP_COMPRESSION_LEVEL", "", "zstd 1-22 (default 3), gzip 1-9 (default 6)", _CODEC,
       frozenset({BACKUP})),
    _v("BACKUP_COMPRESSION_THREADS", "", "zstd worker threads 0-64 (default: the cores the "
       "job may use)", _CODEC, frozenset({BACKUP})),
    _v("BACKUP_AGE_RECIPIENTS", "", "comma list of age or ssh public keys: encrypt to them",
       _CODEC, frozenset({BACKUP, CHECK})),
    _v("BACKUP_AGE_RECIPIENTS_FILE", "", "a file of recipients, one per line (a path, not a "
       "secret)", _CODEC, frozenset({BACKUP, CHECK})),
    _v("BACKUP_AGE_PASSPHRASE", "", "encrypt and decrypt with a passphrase instead (scrypt)",
       _CODEC, READERS, secret=True),
    _v("BACKUP_AGE_IDENTITY", "", "the age private key that decrypts backups", _CODEC,
       READERS, secret=True),
    # verification
    _v("BACKUP_VERIFY", "none", "restore: run verify --restore-test after every backup",
       _VERIFY, frozenset({BACKUP})),
    _v("BACKUP_ROW_COUNTS", "estimate", "row counts in the manifest: exact, estimate or off",
       _VERIFY, frozenset({BACKUP})),
    _v("VERIFY_DATABASE_URL", "", "the server of the test restore's scratch database "
       "(default: the source server)", _VERIFY, frozenset({BACKUP, VERIFY}), secret=True),
    # retention
    _v("BACKUP_RETENTION_DAYS", "30", "delete complete backups older than this; 0: no age "
       "rule", _KEEP, frozenset({BACKUP, LIST, PRUNE})),
    _v("BACKUP_KEEP_MIN", "3", "never delete the newest N, whatever their age", _KEEP,
       frozenset({BACKUP, PRUNE})),
    _v("BACKUP_KEEP_DAILY", "", "keep the newest backup of each of the last N days", _KEEP,
       frozenset({BACKUP, PRUNE})),
    _v("BACKUP_KEEP_WEEKLY", "", "keep the newest backup of each of the last N weeks", _KEEP,
       frozenset({BACKUP, PRUNE})),
    _v("BACKUP_KEEP_MONTHLY", "", "keep the newest backup of each of the last N months", _KEEP,
       frozenset({BACKUP, PRUNE})),
    # notifications
    _v("TELEGRAM_BOT_TOKEN", "", "enables Telegram notifications", _NOTIFY, TOLD, secret=True),
    _v("TELEGRAM_CHAT_ID", "", "the chat to write to (wins over ADMIN_USER_ID)", _NOTIFY, TOLD),
    _v("ADMIN_USER_ID", "", "the chat to write to", _NOTIFY, TOLD),
    _v("TELEGRAM_API_URL", "https://api.telegram.org", "for a proxy or a local test server",
       _NOTIFY, TOLD),
    _v("NOTIFY_WEBHOOK_URL", "", "comma list of URLs: a JSON POST of each report", _NOTIFY,
       TOLD, secret=True),
    _v("NOTIFY_URLS", "", "apprise URLs (Slack, Discord, ntfy, email, ...), space-separated",
       _NOTIFY, TOLD, secret=True),
    _v("HEALTHCHECK_URL", "", "healthchecks.io-style pings: /start, success, /fail", _NOTIFY,
       TOLD, secret=True),
    _v("NOTIFY_ON", "always", "always or failure", _NOTIFY, TOLD),
    _v("NOTIFY_TIMEOUT_SECONDS", "10", "per notification request", _NOTIFY, TOLD),
    _v("ALERT_AFTER_FAILURES", "2", "escalate the notification after N failures in a row",
       _NOTIFY, TOLD),
    _v("NOTIFY_LANGUAGE", "en", f"language of every notification: {languages.listed()}",
       _NOTIFY, TOLD),
    _v("NOTIFY_TIMEZONE", "UTC", "IANA time zone of the dates in notifications", _NOTIFY, TOLD),
    _v("NOTIFY_MENTION", "", "put in front of escalation messages (@alice, <!channel>)",
       _NOTIFY, TOLD),
    # metrics
    _v("PROMETHEUS_PUSHGATEWAY_URL", "", "push metrics to this Pushgateway", _METRICS, TOLD),
    _v("PROMETHEUS_JOB_NAME", "pgbackup", "the job label of the pushed metrics", _METRICS,
       TOLD),
    _v("METRICS_FILE", "", "write metrics to this file (textfile collector)", _METRICS, TOLD),
    # logging and progress
    _v("LOG_FORMAT", "text", "text or json", _LOG, EVERY),
    _v("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR", _LOG, EVERY),
    _v("BACKUP_PROGRESS_SECONDS", "30", "a progress line every N seconds (a bar on a "
       "terminal); 0: none", _LOG, frozenset({BACKUP, RESTORE, VERIFY})),
    # running
    _v("BACKUP_TIMEOUT", "6h", "the longest a run may take (90s, 30m, 6h); cleanups spare "
       "what is younger than this + 1 h", _RUN, frozenset({BACKUP, PRUNE})),
    _v("BACKUP_LOCK_WAIT_TIMEOUT", "5m", "how long pg_dump waits for each table's lock", _RUN,
       frozenset({BACKUP})),
    _v("BACKUP_STANDBY_MAX_LAG", "1h", "on a hot standby, the most its data may lag behind "
       "the primary before a run fails (0: no limit)", _RUN, frozenset({BACKUP, CHECK})),
    _v("BACKUP_STANDBY_PAUSE_REPLAY", "false", "on a hot standby, pause WAL replay for each "
       "dump (no recovery conflict can cancel it), resumed when the dump ends", _RUN,
       frozenset({BACKUP, CHECK})),
    _v("BACKUP_LOCK_DIR", "/tmp", "where the per-job lock file lives (a second run exits 7)",
       _RUN, frozenset({BACKUP, CHECK})),
    _v("BACKUP_STRICT_ENV", "true", "an unknown BACKUP_*, B2_*... variable fails check "
       "(false: a warning)", _RUN, frozenset({CHECK})),
    _v("BACKUP_PARALLEL_DATABASES", "1", "1-32: databases dumped and uploaded at once "
       "(memory: N x one stream)", _RUN, frozenset({BACKUP})),
    _v("BACKUP_SHARDS", "", "split the job's databases over K pods (a Kubernetes Indexed "
       "Job): each backs up, prunes and cleans only its own share", _RUN,
       frozenset({BACKUP, PRUNE, STATUS, CHECK})),
    _v("BACKUP_SHARD_INDEX", "", "this pod's shard, 0 to BACKUP_SHARDS-1 (default: "
       "JOB_COMPLETION_INDEX)", _RUN, frozenset({BACKUP, PRUNE, STATUS, CHECK})),
    _v("JOB_COMPLETION_INDEX", "", "set by Kubernetes in an Indexed Job: the shard index "
       "when BACKUP_SHARDS is set", _RUN, frozenset({BACKUP, PRUNE, STATUS, CHECK})),
)
# fmt: on


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter for every ``--help``: the description and the variables as
    written (already wrapped to ``WIDTH``), the options wrapped to ``WIDTH`` too."""
    return argparse.RawDescriptionHelpFormatter(prog, width=WIDTH)


def by_name() -> dict[str, Variable]:
    return {v.name: v for v in VARIABLES}


def names() -> frozenset[str]:
    """Every name the table documents, ``NAME_FILE`` of the secrets included."""
    return frozenset(name for v in VARIABLES for name in v.names())


def used_by(command: str) -> list[Variable]:
    return [v for v in VARIABLES if command in v.commands]


def help_text(command: str | None = None) -> str:
    """The variables ``command`` uses (every variable without one), grouped, one per line:
    ``NAME=default  meaning``, ``*`` marking a secret. Fits in ``WIDTH`` columns."""
    chosen = used_by(command) if command else list(VARIABLES)
    who = f"'{command}' uses" if command else "the job reads"
    lines = [
        f"environment variables {who} (NAME=default; * a secret, also read from the file",
        "NAME_FILE names; every command checks them all first: a bad value is exit 2):",
    ]
    for group in GROUPS:
        members = [v for v in chosen if v.group == group]
        if not members:
            continue
        lines += ["", f"{group}:"]
        for same in _runs(members):
            lines += _rows(same)
    if not command:
        lines += [
            "",
            "Each command's --help lists the ones it uses; docs/configuration.md has the details.",
        ]
    return "\n".join(lines)


def _runs(members: list[Variable]) -> list[list[Variable]]:
    """Consecutive variables that say the same (libpq's pass-through ones) on one row."""
    runs: list[list[Variable]] = []
    for v in members:
        last = runs[-1][-1] if runs else None
        if last and (last.meaning, last.default, last.secret) == (v.meaning, v.default, v.secret):
            runs[-1].append(v)
        else:
            runs.append([v])
    return runs


def _rows(same: list[Variable]) -> list[str]:
    first = same[0]
    marks = ("*" if first.secret else "") + (f"={first.default}" if first.default else "")
    heads = textwrap.wrap(" ".join(v.name for v in same) + marks, WIDTH - 2)
    wrapped = textwrap.wrap(first.meaning, WIDTH - NAME_COLUMN)
    indent = " " * NAME_COLUMN
    if len(heads) > 1 or len(heads[0]) + 4 > NAME_COLUMN:
        return [f"  {head}" for head in heads] + [indent + line for line in wrapped]
    top, *rest = wrapped
    return [f"  {heads[0]}".ljust(NAME_COLUMN) + top] + [indent + line for line in rest]
