"""``check``: the configuration, the database (reachable, its version, a pg_dump that can dump
it, the databases to back up) and every destination (write, read back, delete a probe). It also
proves what can be proved without a backup: METRICS_FILE's directory takes a file, the age
identity opens what the recipients (or the passphrase) encrypt, and, with ``--notify``, every
notification channel delivers a test message. It flags, without failing, the job's backups dated
more than a day in the future and its manifests that are not believed.
It opens the lock file in BACKUP_LOCK_DIR as ``backup`` does (``lock.probe_lock_dir``).

Every part is tried even when an earlier one failed; the exit code is the first failure's
(configuration 2, database 3, storage 4) and the message names them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime

from backup import manifest, notify, retention, storage
from backup.config import CodecConfig, Config
from backup.dump import Server, inspect_server
from backup.dump.directory import check_spool_space
from backup.errors import BackupError, ConfigError, StorageError
from backup.job import lock
from backup.job.outcome import RunReport
from backup.manifest import Scope
from backup.notify import Delivery, NotificationFailed
from backup.postgres import contents, replay, standby
from backup.storage import Storage

NEEDS_DATABASES = True
DESCRIPTION = (
    "Check the deployment without making a backup: the configuration; BACKUP_LOCK_DIR (the "
    "lock file opened as backup opens it); METRICS_FILE's "
    "directory (a file written and removed); that BACKUP_AGE_IDENTITY opens what "
    "BACKUP_AGE_RECIPIENTS (or the passphrase) encrypts; the database (reachable, its "
    "version, a pg_dump able to dump it); every destination (a probe object written, read "
    "back and deleted). With --notify, a test message through every notification channel. "
    "Exit 0 when all is well, else the first failure's code (2 configuration or notification, "
    "3 database, 4 storage)."
)
AGE_PROBE_BYTES = 1024


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify",
        action="store_true",
        help="also send a test message through Telegram and every webhook (healthchecks is "
        "not pinged: any ping would count as a run); exit 2 if one fails",
    )


class _Results:
    """The lines ``check`` prints and the failures it raises at the end."""

    def __init__(self) -> None:
        self.lines = ["configuration: ok"]
        self.failures: list[BackupError] = []

    def attempt(self, label: str, step: Callable[[], list[str]]) -> bool:
        try:
            self.lines.extend(step())
        except BackupError as err:
            self.failures.append(err)
            self.lines.append(f"{label}: FAILED: {err.message}")
            return False
        return True

    def error(self) -> BackupError | None:
        if not self.failures:
            return None
        first = self.failures[0]
        cls = ConfigError if isinstance(first, ConfigError) else type(first)
        message = "; ".join(err.message for err in self.failures)
        return cls(f"check failed: {message}", hint=first.hint)


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage)
    results = _Results()
    if config.unknown_variables:
        results.attempt("environment", lambda: check_unknown_variables(config))
    results.attempt("BACKUP_LOCK_DIR", lambda: lock.probe_lock_dir(config))
    if config.metrics.metrics_file:
        path = config.metrics.metrics_file
        results.attempt("METRICS_FILE", lambda: probe_metrics_file(path))
    if config.codec.age_identity and config.codec.encrypted:
        results.attempt("age keys", lambda: probe_age_keys(config.codec))
    if args.notify:
        results.attempt("notify", lambda: send_test_notifications(config))
    plans: list[Server] = []
    results.attempt("database", lambda: _database(config, plans))
    if plans and plans[0].replay.standby:
        results.attempt("standby", lambda: replay.check_standby(config))
    if config.dump.format == "directory" and plans:
        results.attempt("spool", lambda: _spool(config, plans[0]))
    for store in storages:
        results.attempt(
            f"destination {store.url}", lambda store=store: _destination(config, store, plans)
        )
    for line in results.lines:
        print(line)
    error = results.error()
    if error is not None:
        raise error
    print("check: ok")
    return 0


def _database(config: Config, plans: list[Server]) -> list[str]:
    server = inspect_server(config)
    plans.append(server)
    refusal = standby.refusal(config, server.replay)
    if refusal is not None:  # a stale standby, or a test restore aimed at one
        refusal.message = f"{server.replay.describe()}: {refusal.message}"
        raise refusal
    return [
        f"database: {config.postgres.display_host} reachable, PostgreSQL {server.info.version}, "
        f"{len(server.databases)} database(s) to back up: {', '.join(server.databases)}",
        f"server: {server.replay.describe()}"
        + (", through a connection pooler in session mode" if server.pooling != "direct" else ""),
        f"pg_dump: {server.tools.version} from {server.tools.bindir} "
        f"(server major {server.info.major}: ok)",
    ]


def _spool(config: Config, server: Server) -> list[str]:
    """BACKUP_FORMAT=directory's spool: TMPDIR's free space against the largest table (the
    backup's own check, exit 2 when it cannot hold one)."""
    largest = max((contents.largest_table_bytes(config, db) for db in server.databases), default=0)
    spool = tempfile.gettempdir()
    check_spool_space(spool, largest, config.dump.jobs)
    free = shutil.disk_usage(spool).free
    return [
        f"spool: {spool} (TMPDIR) has {free / 1e6:.1f} MB free; the largest table takes "
        f"{largest / 1e6:.1f} MB, BACKUP_JOBS={config.dump.jobs}"
    ]


def _destination(config: Config, store: Storage, plans: list[Server]) -> list[str]:
    try:
        probe_destination(store)
    except StorageError:
        raise
    except BackupError as err:
        raise StorageError(err.message, hint=err.hint) from err
    lines = [f"destination {store.url}: write, read back, delete ok"]
    if plans:  # the job's databases are known only from the server
        scope = Scope(frozenset(plans[0].databases), globals=config.postgres.all_databases)
        lines.extend(flag_manifests(store, scope, datetime.now(UTC)))
    return lines


def check_unknown_variables(config: Config) -> list[str]:
    """Variables with the job's prefixes that it does not read: a typo whose value is ignored
    (``BACKUP_RETENTON_DAYS=7`` keeps 30 days). A failure unless ``BACKUP_STRICT_ENV=false``."""
    named = [
        f"{name} (did you mean {suggestion}?)" if suggestion else name
        for name, suggestion in config.unknown_variables
    ]
    text = "not variables of this job, their values are ignored: " + ", ".join(named)
    if config.strict_env:
        raise ConfigError(
            text,
            hint="fix the names (docs/configuration.md), or set BACKUP_STRICT_ENV=false if "
            "another program reads them",
        )
    return [f"environment: warning: {text} (BACKUP_STRICT_ENV=false)"]


def probe_metrics_file(path: str) -> list[str]:
    """METRICS_FILE can be written: not a directory, and its directory takes a new file (the
    metrics are written to a temporary file there, then renamed)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"METRICS_FILE={path!r} is a directory", hint=_METRICS_HINT)
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".pgbackup-check-"):
            pass
    except OSError as err:
        raise ConfigError(
            f"METRICS_FILE: cannot write in {directory!r}: {err.strerror or err}",
            hint=_METRICS_HINT,
        ) from err
    return [f"METRICS_FILE: {directory} is writable"]


_METRICS_HINT = (
    "METRICS_FILE must name a file in an existing directory the job may write to (the "
    "textfile collector's directory)"
)


def probe_age_keys(codec: CodecConfig) -> list[str]:
    """Encrypt a small payload as a backup is encrypted, then decrypt it as restore does: to
    the recipients and with the identity alone (or with the passphrase)."""
    from backup.stream.age import open_decryptor, open_encryptor  # pyrage: only with keys

    payload = secrets.token_bytes(AGE_PROBE_BYTES)
    sink = _KeptBytes()
    with open_encryptor(codec, sink) as encryptor:
        encryptor.write(payload)
    reader = codec
    if codec.age_recipients:
        # Only the identity may open it, as in a restore of a recipients backup.
        reader = dataclasses.replace(codec, age_passphrase=None)
    try:
        with open_decryptor(reader, io.BytesIO(sink.getvalue())) as decryptor:
            opened = decryptor.read()
    except BackupError as err:
        raise ConfigError(
            "BACKUP_AGE_IDENTITY cannot open what is encrypted to BACKUP_AGE_RECIPIENTS: "
            f"{err.message}",
            hint="BACKUP_AGE_IDENTITY must be the private key of one of "
            "BACKUP_AGE_RECIPIENTS (age-keygen -y key.txt prints its public key)",
        ) from err
    if opened != payload:
        raise ConfigError("age: the probe decrypted to different bytes")
    how = "BACKUP_AGE_RECIPIENTS" if codec.age_recipients else "BACKUP_AGE_PASSPHRASE"
    return [f"age: what {how} encrypts, BACKUP_AGE_IDENTITY opens: ok"]


class _KeptBytes(io.BytesIO):
    """A sink whose bytes outlive the encryptor closing it."""

    def close(self) -> None:
        pass


def send_test_notifications(config: Config) -> list[str]:
    """A test message through every channel that sends messages; a failure raises
    ``ConfigError`` naming each channel that failed."""
    notifiers = notify.build_notifiers(config.notify, Delivery.from_config(config.notify))
    if not notifiers:
        raise ConfigError(
            "check --notify: no notification channel is configured",
            hint="set TELEGRAM_BOT_TOKEN and ADMIN_USER_ID (or TELEGRAM_CHAT_ID), "
            "NOTIFY_WEBHOOK_URL or NOTIFY_URLS",
        )
    now = datetime.now(UTC)
    report = RunReport(
        command="check",
        status="success",
        exit_code=0,
        started_at=now,
        finished_at=now,
        host=config.postgres.display_host,
        retention_days=config.retention.days,
        manual_command="pgbackup check --notify",
        extra={"test": True},
    )
    lines, failed = [], []
    for notifier in notifiers:
        if notifier.heartbeat:
            lines.append(
                f"notify: {notifier.name}: not pinged (a test ping would count as a run: a "
                "success could hide a missed backup, /fail would raise an alarm)"
            )
            continue
        try:
            notifier.send(report)
        except NotificationFailed as err:
            failed.append(str(err))
        except Exception as err:  # a channel's own bug: named, not a traceback
            failed.append(f"{notifier.name}: {type(err).__name__}")
        else:
            lines.append(f"notify: {notifier.name}: test message sent")
    if failed:
        raise ConfigError(
            "notification test failed: " + "; ".join(failed),
            hint="check TELEGRAM_BOT_TOKEN, ADMIN_USER_ID / TELEGRAM_CHAT_ID, TELEGRAM_API_URL, "
            "NOTIFY_WEBHOOK_URL and NOTIFY_URLS, and that the job can reach them",
        )
    return lines


def probe_destination(store: Storage) -> None:
    """Write a small random object under ``_state/``, read it back, delete it."""
    key = f"{manifest.STATE_DIR}/check-{secrets.token_hex(6)}.probe"
    payload = secrets.token_bytes(1024)
    store.put(key, io.BytesIO(payload))
    try:
        with store.open(key) as stream:
            if stream.read() != payload:
                raise StorageError(f"{store.url}: the probe object read back differs")
    finally:
        store.delete([key])


def flag_manifests(store: Storage, scope: Scope, now: datetime) -> list[str]:
    """Warning lines for the scope's backups dated in the future and untrustworthy manifests."""
    found = manifest.scan(store, scope=scope)
    lines = [
        f"! backup {m.name} on {store.url} is dated in the future "
        f"({m.created_at:%Y-%m-%d %H:%M:%S} UTC): clock skew or tampering? retention never "
        "counts it among the newest"
        for m in found.trusted
        if retention.future_dated(m.created_at, now)
    ]
    lines += [
        f"! manifest {bad.key} on {store.url} is not trustworthy: {bad.reason}"
        for bad in found.rejected
    ]
    return lines
