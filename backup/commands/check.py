"""``check``: the configuration, the database (reachable, its version, a pg_dump that can dump
it, the databases to back up) and every destination (write, read back, delete a probe). It also
flags, without failing, the job's backups dated more than a day in the future and its manifests
that are not believed."""

from __future__ import annotations

import argparse
import io
import secrets
from datetime import UTC, datetime

from backup import manifest, retention, storage
from backup.config import Config
from backup.dump import inspect_server
from backup.errors import BackupError, StorageError
from backup.manifest import Scope
from backup.storage import Storage

HELP = "config, database, pg_dump/server versions, destinations"
NEEDS_DATABASES = True


def configure(parser: argparse.ArgumentParser) -> None:
    """``check`` takes no arguments: it checks what the environment configures."""


def run(config: Config, args: argparse.Namespace) -> int:
    storages = storage.open_all(config.storage)
    lines = ["configuration: ok"]
    server = inspect_server(config)
    lines.append(
        f"database: {config.postgres.display_host} reachable, PostgreSQL {server.info.version}, "
        f"{len(server.databases)} database(s) to back up: {', '.join(server.databases)}"
    )
    lines.append(
        f"pg_dump: {server.tools.version} from {server.tools.bindir} "
        f"(server major {server.info.major}: ok)"
    )
    failures = []
    for store in storages:
        try:
            probe_destination(store)
            lines.append(f"destination {store.url}: write, read back, delete ok")
            scope = Scope(frozenset(server.databases), globals=config.postgres.all_databases)
            lines.extend(flag_manifests(store, scope, datetime.now(UTC)))
        except BackupError as err:
            failures.append(f"{store.url}: {err.message}")
            lines.append(f"destination {store.url}: FAILED: {err.message}")
    for line in lines:
        print(line)
    if failures:
        raise StorageError("destination check failed: " + "; ".join(failures))
    print("check: ok")
    return 0


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
