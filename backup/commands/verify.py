"""``verify``: download a backup, check its size and sha256, decode it to the end and list the
archive; with ``--restore-test``, also restore it into a scratch database and compare."""

from __future__ import annotations

import argparse
from dataclasses import replace

from backup import storage
from backup import verify as engine
from backup.commands import reporting
from backup.config import Config
from backup.errors import BackupError, ConfigError
from backup.job.outcome import VerifyOutcome
from backup.manifest import catalog
from backup.postgres import tools as pg_tools

NEEDS_DATABASES = False
DESCRIPTION = (
    "Download a backup, check its size and sha256 against its manifest, decrypt and decode "
    "it to the end and list the archive with pg_restore --list; --restore-test also "
    "restores it into a scratch database. Exit 5 when the backup is damaged."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", nargs="?", default="latest", help="backup name from 'list', or latest"
    )
    parser.add_argument(
        "--restore-test",
        action="store_true",
        help="also restore into a scratch database and compare tables and row counts",
    )
    parser.add_argument(
        "--table",
        action="append",
        metavar="SCHEMA.TABLE",
        help="with --restore-test: test-restore only this table (repeatable; names as "
        "restore --table takes them), reading only what it needs; its rows are counted "
        "(equal to the manifest's exact count) and their md5 printed",
    )
    parser.add_argument("--database", help="the database whose backup to verify (for latest)")
    parser.add_argument("--destination", metavar="URL", help="read from this destination first")


def run(config: Config, args: argparse.Namespace) -> int:
    """Verify one backup. What it checks, and then what it found, is recorded for the run's
    report (``reporting.record_verify``): a failure report names the backup, a success
    carries the findings (metrics: the test restore's time)."""
    if args.table and not args.restore_test:
        raise ConfigError(
            "--table goes with --restore-test",
            hint="verify NAME --table SCHEMA.TABLE --restore-test",
        )
    storages = storage.open_all(config.storage, first=args.destination)
    entries = catalog.resolve(storages, args.name, args.database, config.postgres.database)
    by_url = {s.url: s for s in storages}
    entry = entries[0]
    m = entry.manifest
    outcome = VerifyOutcome(
        name=m.name,
        database=m.database if m.database is not None else "globals",
        destination=entry.destination,
        size_bytes=m.size_bytes,
        tables=0,
        restore_test=args.restore_test,
    )
    reporting.record_verify(outcome)
    if args.table:
        return _verify_tables(config, by_url, entries, args.table, outcome)
    try:
        tools = pg_tools.reader_tools(m.pg_dump_version, config.pg_bin_dirs)
        result = engine.verify(config, by_url, entry, tools)
        outcome = replace(outcome, size_bytes=result.size_bytes, tables=result.tables)
        reporting.record_verify(outcome)
        if args.restore_test:
            test = engine.restore_test(config, by_url, entry)
            outcome = replace(
                outcome,
                restore_seconds=test.seconds,
                tables_checked=test.tables_checked,
                row_counts_checked=test.row_counts_checked,
            )
            reporting.record_verify(outcome)
    except BackupError as err:
        raise _naming(err, m.name, entry.destination) from err
    print(f"ok: {result.name} on {result.destination} verified")
    return 0


def _verify_tables(
    config: Config,
    storages: dict[str, storage.Storage],
    entries: list[catalog.Entry],
    names: list[str],
    outcome: VerifyOutcome,
) -> int:
    """``--table T --restore-test``: the tables alone, restored into a scratch database."""
    from backup.restore import table_check  # the restore engine: only for --table

    entry = entries[0]
    try:
        test = table_check.test_restore_tables(
            config, engine.scratch_postgres(config), storages, entries, names
        )
    except BackupError as err:
        raise _naming(err, entry.manifest.name, entry.destination) from err
    reporting.record_verify(
        replace(
            outcome,
            tables=len(test.tables),
            tables_checked=len(test.tables),
            row_counts_checked=sum(1 for t in test.tables if t.exact and t.expected is not None),
        )
    )
    for table in test.tables:
        if table.expected is None:
            said = "the manifest has no count for it"
        elif table.exact:
            said = "equal to the manifest's exact count"
        else:
            said = f"the manifest's estimate: {table.expected}"
        print(f"{table.name}: {table.rows} rows ({said}), rows md5 {table.md5}")
    print(
        "the same md5 on another copy: " + table_check.ROWS_MD5.replace("{table}", "SCHEMA.TABLE")
    )
    print(
        f"ok: {entry.manifest.name} on {entry.destination}: test restore of "
        f"{len(test.tables)} table{'s' if len(test.tables) != 1 else ''} passed "
        f"in {test.seconds:.1f} s"
    )
    return 0


def _naming(err: BackupError, name: str, destination: str) -> BackupError:
    """``err`` with the backup it is about in its message (failure reports quote it)."""
    if name in err.message:
        return err
    return type(err)(f"{name} on {destination}: {err.message}", hint=err.hint)
