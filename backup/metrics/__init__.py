"""Every metric the job exports, defined once, and how they leave the process.

The metrics live in a registry of their own (never prometheus-client's global one) and are
filled once, when the run is over, from the run report and the state of each destination
(``backup.job.history``): the last success time must survive across runs, and a one-shot job has no
memory, so it comes from ``_state/status-<job>.json``. They are then pushed to a Pushgateway
(PROMETHEUS_PUSHGATEWAY_URL) and/or written to a file for node_exporter's textfile collector
(METRICS_FILE). A failure to push or write is logged, never raised.

At the end of a run: ``metrics.publish(config.metrics, report, states)``, where ``states`` are
the states ``backup.job.history.record`` returned, one per destination URL.

Every series is labelled by ``database`` and ``destination`` (the destination URL, which never
holds credentials). A database that never reached a destination has a last success time of 0,
so "no success in 26 h" alerts fire for it too.

Besides, every run of a command that runs unattended (backup, verify, prune, status) publishes
the ``pgbackup_command_*`` series labelled by ``command`` (``publish_command``): its exit code,
pushed in a Pushgateway group of its own and written next to METRICS_FILE in a file of its own
(``command_metrics_file``), so that no command replaces another's series.

A verify run that knows which backup it checked (``RunReport.verify``) also publishes the
``pgbackup_*verify*`` and ``pgbackup_last_restore_test_seconds`` series (``VERIFY_DEFINITIONS``),
labelled by ``database`` and ``destination``. Their memory across runs is where they are
published, so verify never writes to a destination: a failed verify publishes only
``pgbackup_last_verify_success 0``, and the time of the last verify that passed stays
(a Pushgateway push-add replaces only the families it sends, in a group of the verify's own per
database and destination; the verify's file is rewritten with the series it already held).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from backup.job.history import DatabaseState, State, stored_in
from backup.job.outcome import DatabaseResult, RunReport
from backup.metrics.files import held_verify_series, write_texts

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from backup.config import MetricsConfig

log = logging.getLogger(__name__)

LABELS = ("database", "destination")
PUSH_TIMEOUT_S = 10.0

# name -> help text; the only place metric names are spelled.
DEFINITIONS: dict[str, str] = {
    "pgbackup_last_success_timestamp_seconds": (
        "Unix time of the last backup of the database that reached the destination (0: never)"
    ),
    "pgbackup_last_run_timestamp_seconds": "Unix time the last run finished",
    "pgbackup_last_run_success": (
        "1 if the last run's backup of the database reached the destination, else 0"
    ),
    "pgbackup_last_duration_seconds": "Duration of the database's backup in the last run",
    "pgbackup_last_size_bytes": (
        "Stored size of the last backup of the database that reached the destination"
    ),
    "pgbackup_consecutive_failures": (
        "Runs in a row whose backup of the database did not reach the destination"
    ),
}

# The outcome of each command that runs unattended (backup, verify, prune, status), one series
# per command; published after every run of it, success included, so an alert on a failure
# clears once the command succeeds again.
COMMAND_LABELS = ("command",)
COMMAND_DEFINITIONS: dict[str, str] = {
    "pgbackup_command_last_run_success": "1 if the last run of the command exited 0, else 0",
    "pgbackup_command_last_run_timestamp_seconds": "Unix time the last run of the command finished",
    "pgbackup_command_exit_code": (
        "Exit code of the last run of the command (docs/reference/exit-codes.md)"
    ),
}


# What verify found, per database and destination (``VerifyOutcome``); published with the verify
# command's series, never in the backup's group or file.
VERIFY_DEFINITIONS: dict[str, str] = {
    "pgbackup_last_verify_success": (
        "1 if the last verify of the database's backup from the destination passed, else 0"
    ),
    "pgbackup_last_verify_success_timestamp_seconds": (
        "Unix time the last verify of the database's backup from the destination passed"
    ),
    "pgbackup_last_restore_test_seconds": (
        "Seconds the last test restore that passed (verify --restore-test) took to restore"
    ),
}


def _timestamp(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _safe_url(url: str) -> str:
    """``url`` without credentials, for log lines."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _values(
    report: RunReport, result: DatabaseResult | None, known: DatabaseState | None, destination: str
) -> dict[str, float]:
    """One (database, destination) series of every metric.

    ``result`` is the database's result in this run (None: the run never reached it); ``known``
    its state in the destination after the run (None: no state, this run alone counts).
    """
    finished = _timestamp(report.finished_at)
    stored = result is not None and stored_in(result, destination)
    last_success = max(
        _timestamp(known.last_success_at) if known else 0.0, finished if stored else 0.0
    )
    if known is not None:
        failures = known.consecutive_failures
    else:
        failures = 0 if stored else max(1, report.consecutive_failures)
    if result is not None and stored:
        size = result.size_bytes
    else:
        size = known.last_size_bytes if known else 0
    return {
        "pgbackup_last_success_timestamp_seconds": last_success,
        "pgbackup_last_run_timestamp_seconds": finished,
        "pgbackup_last_run_success": 1.0 if stored else 0.0,
        "pgbackup_last_duration_seconds": result.duration_s if result else report.duration_s,
        "pgbackup_last_size_bytes": size,
        "pgbackup_consecutive_failures": failures,
    }


def _group(report: RunReport) -> dict[str, str]:
    """The start of every Pushgateway grouping key: the server (``instance``), and the shard
    (``shard="<i>-of-<K>"``) of a sharded job's run, so the shards' pushes never replace each
    other's series."""
    group = {"instance": report.host}
    if report.shard:
        group["shard"] = report.shard
    return group


class Metrics:
    """The job's metrics in a fresh registry; fill with ``from_report``, then publish."""

    def __init__(
        self,
        grouping_key: Mapping[str, str] | None = None,
        definitions: Mapping[str, str] = DEFINITIONS,
        labels: tuple[str, ...] = LABELS,
    ) -> None:
        # prometheus_client (and the http.server it loads) only when metrics are configured.
        from prometheus_client import CollectorRegistry, Gauge

        self.registry = CollectorRegistry()
        self.gauges: dict[str, Gauge] = {
            name: Gauge(name, help_text, labels, registry=self.registry)
            for name, help_text in definitions.items()
        }
        self.grouping_key: dict[str, str] = dict(grouping_key or {})

    def set(self, name: str, database: str, destination: str, value: float) -> None:
        self.gauges[name].labels(database=database, destination=destination).set(value)

    @classmethod
    def from_report(cls, report: RunReport, states: Mapping[str, State] | None = None) -> Metrics:
        """The metrics of one run.

        ``states`` maps each destination URL to its state *after* this run, as returned by
        ``backup.job.history.record``. The series cover every database of the report or of the
        states (a database with no result this run counts as not backed up) and every
        destination.
        The Pushgateway grouping key is ``instance=<report.host>`` (and ``shard``: a shard's
        run has a group of its own, or the last shard to push would replace the others').
        """
        states = states or {}
        metrics = cls(grouping_key=_group(report))
        results = {r.database: r for r in report.results}
        databases = list(
            dict.fromkeys([*results, *(d for s in states.values() for d in s.databases)])
        )
        destinations = list(dict.fromkeys([*states, *report.destinations]))
        for database in databases or [""]:
            for destination in destinations or [""]:
                known = (
                    states[destination].databases.get(database) if destination in states else None
                )
                values = _values(report, results.get(database), known, destination)
                for name, value in values.items():
                    metrics.set(name, database, destination, value)
        return metrics

    @classmethod
    def from_command(cls, report: RunReport) -> Metrics:
        """The command-level metrics of one run of ``report.command`` (any exit code).

        The Pushgateway grouping key is ``instance=<report.host>, command=<report.command>``:
        a push-add replaces whole metric families within a group, so each command has its own
        group and a ``verify`` never erases what ``backup`` pushed, nor the other way round.
        """
        metrics = cls(
            grouping_key={**_group(report), "command": report.command},
            definitions=COMMAND_DEFINITIONS,
            labels=COMMAND_LABELS,
        )
        values = {
            "pgbackup_command_last_run_success": 1.0 if report.exit_code == 0 else 0.0,
            "pgbackup_command_last_run_timestamp_seconds": _timestamp(report.finished_at),
            "pgbackup_command_exit_code": float(report.exit_code),
        }
        for name, number in values.items():
            metrics.gauges[name].labels(command=report.command).set(number)
        return metrics

    @classmethod
    def from_verify(
        cls, report: RunReport, held: Mapping[tuple[str, str, str], float] | None = None
    ) -> Metrics:
        """The verify series of ``report`` (whose ``verify`` must be set): what this run says,
        on top of ``held``, the series already published ((name, database, destination) ->
        value; those of this run's database and destination that it does not say stay).

        A run that passed says all three (the restore time only after a test restore); one that
        failed says only ``pgbackup_last_verify_success 0``. The Pushgateway grouping key is
        ``instance, command, database, destination``: a push-add replaces whole families in a
        group, so each database and destination has one, and the families a failed run does not
        send keep their values there.
        """
        outcome = report.verify
        if outcome is None:
            raise ValueError("not a verify report")
        values = dict(held or {})
        passed = report.exit_code == 0
        own = {"pgbackup_last_verify_success": 1.0 if passed else 0.0}
        if passed:
            own["pgbackup_last_verify_success_timestamp_seconds"] = _timestamp(report.finished_at)
            if outcome.restore_seconds is not None:
                own["pgbackup_last_restore_test_seconds"] = outcome.restore_seconds
        for name, number in own.items():
            values[(name, outcome.database, outcome.destination)] = number
        # Only families with a sample: an empty one pushed would erase the one in the group.
        names = {name for name, _, _ in values}
        metrics = cls(
            grouping_key={
                **_group(report),
                "command": report.command,
                "database": outcome.database,
                "destination": outcome.destination,
            },
            definitions={n: h for n, h in VERIFY_DEFINITIONS.items() if n in names},
        )
        for (name, database, destination), number in values.items():
            metrics.set(name, database, destination, number)
        return metrics

    def text(self) -> str:
        """The Prometheus text exposition of the registry."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def push(self, url: str, job: str, timeout_s: float = PUSH_TIMEOUT_S) -> bool:
        """POST (push-add) to the Pushgateway at ``url``; False (and a log line) on failure.

        Only this job's group (``job`` and the grouping key) is touched: other jobs' series
        stay. Credentials in the URL (``https://user:pass@host``) are sent as basic auth.
        """
        from prometheus_client.exposition import (
            basic_auth_handler,
            default_handler,
            pushadd_to_gateway,
        )

        parts = urlsplit(url)
        handler: Callable[..., Callable[[], None]] = default_handler
        if parts.username:
            username, password = parts.username, parts.password or ""

            def handler(
                url: str, method: str, timeout: float | None, headers: Any, data: bytes
            ) -> Callable[[], None]:
                return basic_auth_handler(url, method, timeout, headers, data, username, password)

            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        try:
            pushadd_to_gateway(
                url,
                job=job,
                registry=self.registry,
                grouping_key=self.grouping_key,
                timeout=timeout_s,
                handler=handler,
            )
        except Exception as err:  # metrics must never fail the run
            log.warning("metrics: push to %s failed: %s", _safe_url(url), err)
            return False
        log.info("metrics: pushed to %s (job %s)", _safe_url(url), job)
        return True

    def write(self, path: str) -> bool:
        """Write the text exposition to ``path`` atomically (temporary file, then rename)."""
        return write_texts(path, [self.text()])

    def publish(self, config: MetricsConfig) -> int:
        """Push and/or write, as ``config`` says; returns how many of them failed."""
        failed = 0
        if config.pushgateway_url and not self.push(config.pushgateway_url, config.job_name):
            failed += 1
        if config.metrics_file and not self.write(config.metrics_file):
            failed += 1
        return failed


def publish(
    config: MetricsConfig, report: RunReport, states: Mapping[str, State] | None = None
) -> int:
    """Build the run's metrics and push and/or write them as ``config`` says; never raises.

    ``states``: destination URL -> state after this run (``backup.job.history.record``). Returns how
    many of push/write failed (0 when neither is configured).
    """
    if not (config.pushgateway_url or config.metrics_file):
        return 0
    try:
        metrics = Metrics.from_report(report, states)
    except Exception as err:  # metrics must never fail the run
        log.warning("metrics: cannot build them: %s: %s", type(err).__name__, err)
        return 1
    return metrics.publish(config)


def command_metrics_file(metrics_file: str, command: str) -> str:
    """Where a command's own metrics are written: next to METRICS_FILE, one file per command
    (``pgbackup.prom`` -> ``pgbackup.verify.prom``), so no command's run overwrites the
    backup's series; a textfile collector reads every ``*.prom`` of the directory."""
    stem = metrics_file.removesuffix(".prom")
    return f"{stem}.{command}.prom"


def publish_command(config: MetricsConfig, report: RunReport) -> int:
    """Push and/or write the command-level metrics of ``report``'s run, and a verify's own
    series when it knows which backup it checked; never raises.

    Returns how many of push/write failed (0 when neither is configured).
    """
    if not (config.pushgateway_url or config.metrics_file):
        return 0
    path = config.metrics_file and command_metrics_file(config.metrics_file, report.command)
    try:
        metrics = Metrics.from_command(report)
        verify = file_verify = None
        if report.verify is not None:
            verify = Metrics.from_verify(report)
            if path:
                file_verify = Metrics.from_verify(
                    report, held_verify_series(path, VERIFY_DEFINITIONS)
                )
    except Exception as err:  # metrics must never fail the run
        log.warning("metrics: cannot build them: %s: %s", type(err).__name__, err)
        return 1
    failed = 0
    if config.pushgateway_url:
        for pushed in (metrics, verify):
            if pushed is not None and not pushed.push(config.pushgateway_url, config.job_name):
                failed += 1
    if path and not write_texts(path, [m.text() for m in (metrics, file_verify) if m]):
        failed += 1
    return failed
