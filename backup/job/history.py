"""The run history kept in each destination: ``<prefix>/_state/status-<job>.json``, one per job.

Several jobs may share a prefix (one per database, one per server): each keeps its own file,
named after what the job is (``state_key``: a digest of its databases and its server), so one
job's failures never count in another's streak. A job without its own file yet starts from the
history every job shared before (``<prefix>/_state/status.json``, ``LEGACY_KEY``), narrowed to its
own databases; that file is read, never written again. A sharded job (``BACKUP_SHARDS``) keeps
one file per shard (``...-shard-<i>-of-<K>.json``): its pods run at the same time and must not
overwrite each other's runs; ``load_job`` without a shard index reads them all (``status``).

It remembers what one run cannot know alone: how many runs in a row failed (to escalate the
notification after ALERT_AFTER_FAILURES) and when each database last reached this destination
(the ``pgbackup_last_success_timestamp_seconds`` metric must survive across runs).

- ``load(storage)`` never fails: a missing file is an empty state, a corrupt one is an empty
  state and a warning, an unreadable one (storage error) an empty state marked ``read_failed``.
- ``record(storage, report)`` appends the run (the last ``MAX_RUNS`` are kept), updates the
  counters and writes the file back. A write failure is logged, never raised; a state that could
  not be read is not overwritten, so a passing storage hiccup does not erase the history.

Run-level counters follow the report: a success resets ``consecutive_failures`` to 0, a failure
or a partial run adds one. Per-database counters are this destination's view: a database whose
backup reached this destination counts as a success here even when another destination failed.

The file is never read as a backup: ``list``, ``restore`` and retention read only
``<database>/*.manifest.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from backup.config import PostgresConfig, ScaleConfig
from backup.errors import ObjectNotFound
from backup.job.outcome import DatabaseResult, RunReport
from backup.storage import Storage

log = logging.getLogger(__name__)

STATE_KEY = "_state/status.json"
LEGACY_KEY = STATE_KEY
"""The history every job on a prefix shared (read to migrate; the key ``load`` and ``record``
use when no job is given)."""
FORMAT_VERSION = 1
MAX_RUNS = 20
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class DatabaseState:
    """One database as seen from one destination."""

    last_status: str | None = None
    """``success`` when the last run's backup reached this destination, else ``failure``."""
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    last_backup: str | None = None
    """Name of the last backup that reached this destination."""
    last_size_bytes: int = 0


@dataclass(frozen=True)
class RunRecord:
    command: str
    status: str
    exit_code: int
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    results: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class State:
    consecutive_failures: int = 0
    last_success_at: datetime | None = None
    last_run_at: datetime | None = None
    databases: Mapping[str, DatabaseState] = field(default_factory=dict)
    runs: tuple[RunRecord, ...] = ()
    """Oldest first; at most ``MAX_RUNS``."""
    read_failed: bool = field(default=False, compare=False)
    """The file exists but could not be read; ``record`` will not overwrite it."""

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT_VERSION,
            "consecutive_failures": self.consecutive_failures,
            "last_success_at": _iso(self.last_success_at),
            "last_run_at": _iso(self.last_run_at),
            "databases": {
                name: {k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(db).items()}
                for name, db in sorted(self.databases.items())
            },
            "runs": [
                {
                    **{
                        k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(run).items()
                    },
                    "results": list(run.results),
                }
                for run in self.runs
            ],
        }
        return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> State:
        """Parse a status file; raises ``ValueError`` when it is not one."""
        try:
            document = json.loads(data)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            databases = {
                str(name): DatabaseState(
                    last_status=db.get("last_status"),
                    last_run_at=_parse_time(db.get("last_run_at")),
                    last_success_at=_parse_time(db.get("last_success_at")),
                    consecutive_failures=int(db.get("consecutive_failures", 0)),
                    last_backup=db.get("last_backup"),
                    last_size_bytes=int(db.get("last_size_bytes", 0)),
                )
                for name, db in dict(document.get("databases", {})).items()
            }
            runs = tuple(
                RunRecord(
                    command=str(run["command"]),
                    status=str(run["status"]),
                    exit_code=int(run["exit_code"]),
                    started_at=_require_time(run["started_at"]),
                    finished_at=_require_time(run["finished_at"]),
                    error=run.get("error"),
                    results=tuple(dict(r) for r in run.get("results", ())),
                )
                for run in list(document.get("runs", ()))
            )
            return cls(
                consecutive_failures=int(document.get("consecutive_failures", 0)),
                last_success_at=_parse_time(document.get("last_success_at")),
                last_run_at=_parse_time(document.get("last_run_at")),
                databases=databases,
                runs=runs[-MAX_RUNS:],
            )
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
            raise ValueError(f"not a status file: {type(err).__name__}: {err}") from err


def state_key(job: PostgresConfig | None, scale: ScaleConfig | None = None) -> str:
    """Where ``job``'s history lives: ``_state/status-<16 hex>.json``, a digest of its databases
    (or all of them) and its server, with ``-shard-<i>-of-<K>`` for one shard of a sharded job;
    ``LEGACY_KEY`` without a job."""
    if job is None:
        return LEGACY_KEY
    databases = ["*all*"] if job.all_databases else sorted(job.databases)
    identity = "|".join((job.display_host, "--", *databases))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    shard = ""
    if scale is not None and scale.sharded and scale.shard_index is not None:
        shard = f"-shard-{scale.shard_index}-of-{scale.shards}"
    return f"_state/status-{digest}{shard}.json"


def load_job(storage: Storage, job: PostgresConfig, scale: ScaleConfig) -> State:
    """The history of the job as ``scale`` sees it: its shard's, or with ``BACKUP_SHARDS`` and
    no index, every shard's databases together (status of the whole job)."""
    if not scale.sharded or scale.shard_index is not None:
        return load(storage, job, scale)
    databases: dict[str, DatabaseState] = {}
    for index in range(scale.shards):
        shard = load(storage, job, replace(scale, shard_index=index))
        databases.update(shard.databases)
    return State(databases=databases)


def load(
    storage: Storage, job: PostgresConfig | None = None, scale: ScaleConfig | None = None
) -> State:
    """``job``'s state stored in ``storage``; an empty one when missing, corrupt or unreadable.
    A job with no file of its own yet starts from the shared ``LEGACY_KEY``, narrowed to its
    databases."""
    key = state_key(job, scale)
    state = _load(storage, key)
    if state is not None:
        return state
    if job is None:
        return State()
    legacy = _load(storage, LEGACY_KEY)
    if legacy is None or legacy.read_failed:
        # The job's own file is another file: a shared one that cannot be read is not at risk.
        return State()
    log.info(
        "state: %s in %s starts from the history all jobs shared (%s)",
        key,
        storage.url,
        LEGACY_KEY,
    )
    return _narrowed(legacy, job)


def _load(storage: Storage, key: str) -> State | None:
    """The state in ``key``; None when missing."""
    try:
        stream = storage.open(key)
        try:
            data = stream.read()
        finally:
            stream.close()
    except ObjectNotFound:
        return None
    except Exception as err:  # the backup must run even when the history cannot be read
        log.warning("state: cannot read %s in %s: %s", key, storage.url, err)
        return State(read_failed=True)
    try:
        return State.from_json(data)
    except ValueError as err:
        log.warning(
            "state: %s in %s is corrupt (%s); starting a new history", key, storage.url, err
        )
        return State()


def _narrowed(state: State, job: PostgresConfig) -> State:
    """The shared history as one job's: its databases, and the runs that touched them."""
    if job.all_databases:
        return state
    mine = set(job.databases)
    runs = tuple(
        run
        for run in state.runs
        if not run.results or any(r.get("database") in mine for r in run.results)
    )
    return replace(
        state,
        databases={name: db for name, db in state.databases.items() if name in mine},
        runs=runs,
    )


def apply(state: State, report: RunReport, destination_url: str) -> State:
    """``state`` after ``report``'s run, as seen from the destination ``destination_url``."""
    finished = _utc(report.finished_at)
    success = report.status == "success"
    databases = dict(state.databases)
    for result in report.results:
        databases[result.database] = _database_after(
            databases.get(result.database, DatabaseState()),
            result,
            stored_in(result, destination_url),
            finished,
        )
    if not report.results and not success:
        # The run failed before it reached any database: none was backed up.
        for name, db in databases.items():
            databases[name] = replace(
                db,
                last_status="failure",
                last_run_at=finished,
                consecutive_failures=db.consecutive_failures + 1,
            )
    run = RunRecord(
        command=report.command,
        status=report.status,
        exit_code=report.exit_code,
        started_at=_utc(report.started_at),
        finished_at=finished,
        error=_clip(report.error),
        results=tuple(_run_result(r, destination_url) for r in report.results),
    )
    return State(
        consecutive_failures=0 if success else state.consecutive_failures + 1,
        last_success_at=finished if success else state.last_success_at,
        last_run_at=finished,
        databases=databases,
        runs=(*state.runs, run)[-MAX_RUNS:],
    )


def record(
    storage: Storage,
    report: RunReport,
    previous: State | None = None,
    job: PostgresConfig | None = None,
    scale: ScaleConfig | None = None,
) -> State:
    """Add ``report``'s run to ``job``'s state in ``storage`` and write it back; never raises.

    ``previous`` is the state ``load`` returned at the start of the run (read again if None).
    Returns the new state, also when it could not be written.
    """
    key = state_key(job, scale)
    if previous is None:
        previous = load(storage, job, scale)
    state = apply(previous, report, storage.url)
    if previous.read_failed:
        log.warning("state: %s in %s left as it was: it could not be read", key, storage.url)
        return state
    try:
        storage.put(key, io.BytesIO(state.to_json()))
    except Exception as err:  # a history write must not turn a good backup into a failure
        log.warning("state: cannot write %s to %s: %s", key, storage.url, err)
    else:
        log.debug("state: %s written to %s", key, storage.url)
    return state


def failures_in_a_row(states: Iterable[State], status: str) -> int:
    """``RunReport.consecutive_failures`` for a run ending with ``status``, given the states
    loaded at its start (one per destination; the worst one counts)."""
    if status == "success":
        return 0
    return max((s.consecutive_failures for s in states), default=0) + 1


def last_success(states: Iterable[State]) -> datetime | None:
    """``RunReport.last_success_at``: the newest fully successful run in any destination."""
    return max((s.last_success_at for s in states if s.last_success_at), default=None)


def stored_in(result: DatabaseResult, destination_url: str) -> bool:
    """Did ``result``'s backup reach ``destination_url``? (A result that lists no destination
    and succeeded reached them all.)"""
    if result.status == "failure":
        return False
    for dest in result.destinations:
        if dest.url == destination_url:
            return dest.ok
    return result.status == "success" and not result.destinations


def _database_after(
    db: DatabaseState, result: DatabaseResult, stored: bool, finished: datetime
) -> DatabaseState:
    if stored:
        return DatabaseState(
            last_status="success",
            last_run_at=finished,
            last_success_at=finished,
            consecutive_failures=0,
            last_backup=result.name,
            last_size_bytes=result.size_bytes,
        )
    return replace(
        db,
        last_status="failure",
        last_run_at=finished,
        consecutive_failures=db.consecutive_failures + 1,
    )


def _run_result(result: DatabaseResult, destination_url: str) -> dict[str, Any]:
    return {
        "database": result.database,
        "status": result.status,
        "stored": stored_in(result, destination_url),
        "name": result.name,
        "size_bytes": result.size_bytes,
        "duration_s": round(result.duration_s, 3),
        "error": _clip(result.error),
    }


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 1] + "…"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    return _require_time(value)


def _require_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"a time must be a string, not {type(value).__name__}")
    return _utc(datetime.fromisoformat(value))
