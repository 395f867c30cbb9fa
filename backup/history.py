"""The run history kept in each destination: ``<prefix>/_state/status.json``.

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

A sharded job (``BACKUP_SHARDS``) keeps one file per shard (``state_key``): its pods run at
once. The file is never read as a backup: ``list``, ``restore`` and retention read only
``<database>/*.manifest.json``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from backup.config import ScaleConfig
from backup.errors import ObjectNotFound
from backup.outcome import DatabaseResult, RunReport
from backup.storage import Storage

log = logging.getLogger(__name__)

STATE_KEY = "_state/status.json"
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
    key: str = field(default=STATE_KEY, compare=False)
    """The file it was read from, where ``record`` writes it back (``state_key``)."""

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


def state_key(scale: ScaleConfig) -> str:
    """The history's file: one per shard of a sharded job (``BACKUP_SHARDS``), which runs at
    the same time as the others and must not overwrite their runs."""
    if not scale.sharded or scale.shard_index is None:
        return STATE_KEY
    return f"_state/status-shard-{scale.shard_index}-of-{scale.shards}.json"


def load_job(storage: Storage, scale: ScaleConfig) -> State:
    """The history of the job as ``scale`` sees it: its shard's, or with ``BACKUP_SHARDS`` and
    no index, every shard's databases together (status of the whole job)."""
    if not scale.sharded or scale.shard_index is not None:
        return load(storage, state_key(scale))
    databases: dict[str, DatabaseState] = {}
    for index in range(scale.shards):
        shard = load(storage, state_key(replace(scale, shard_index=index)))
        databases.update(shard.databases)
    return State(databases=databases)


def load(storage: Storage, key: str = STATE_KEY) -> State:
    """The state stored in ``storage``; an empty one when missing, corrupt or unreadable."""
    try:
        stream = storage.open(key)
        try:
            data = stream.read()
        finally:
            stream.close()
    except ObjectNotFound:
        return State(key=key)
    except Exception as err:  # the backup must run even when the history cannot be read
        log.warning("state: cannot read %s in %s: %s", key, storage.url, err)
        return State(read_failed=True, key=key)
    try:
        return replace(State.from_json(data), key=key)
    except ValueError as err:
        log.warning(
            "state: %s in %s is corrupt (%s); starting a new history", key, storage.url, err
        )
        return State(key=key)


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


def record(storage: Storage, report: RunReport, previous: State | None = None) -> State:
    """Add ``report``'s run to the state in ``storage`` and write it back; never raises.

    ``previous`` is the state ``load`` returned at the start of the run (read again if None).
    Returns the new state, also when it could not be written.
    """
    if previous is None:
        previous = load(storage)
    state = replace(apply(previous, report, storage.url), key=previous.key)
    if previous.read_failed:
        log.warning("state: %s in %s left as it was: it could not be read", state.key, storage.url)
        return state
    try:
        storage.put(state.key, io.BytesIO(state.to_json()))
    except Exception as err:  # a history write must not turn a good backup into a failure
        log.warning("state: cannot write %s to %s: %s", state.key, storage.url, err)
    else:
        log.debug("state: %s written to %s", state.key, storage.url)
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
