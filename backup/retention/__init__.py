"""Retention: which complete backups to delete, given their manifests, a policy and ``now``.

Pure code: no I/O, no clock, no environment. The job reads manifests (never file times), calls
``plan`` per database per destination, logs every decision, and deletes ``to_delete`` only after a
fully successful run or on ``prune`` (``prune --dry-run`` prints the plan and deletes nothing).

A backup is kept if ANY rule keeps it; everything else is deleted:

- ``keep_min``: the newest N backups, whatever their age (``BACKUP_KEEP_MIN``);
- ``days``: backups created less than ``days`` days before ``now`` (``BACKUP_RETENTION_DAYS``;
  0 means this rule keeps nothing);
- backups dated after ``now`` (a clock skew between runs must never delete the newest backups);
  but one dated more than ``FUTURE_TOLERANCE`` ahead (a skewed clock, a tampered manifest) takes
  no place among the newest ``keep_min`` nor a daily/weekly/monthly slot, so it can never push
  real backups out;
- grandfather-father-son (``BACKUP_KEEP_DAILY`` / ``_WEEKLY`` / ``_MONTHLY``): the newest backup of
  each of the last N UTC days / ISO weeks / months *that have backups*, as restic's and borg's
  ``--keep-daily`` etc. count them: a week without backups does not use up one of the N.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from backup.config import RetentionPolicy

# What "future-dated" means belongs to the manifests (catalog's ``latest`` skips such a backup
# too); retention's callers keep reading it here.
from backup.manifest.scheme import FUTURE_TOLERANCE, future_dated  # noqa: F401


class Backup(Protocol):
    """What retention needs of a backup: the job passes manifest objects."""

    @property
    def name(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True)
class Decision:
    """One backup's fate and every reason for it (for logs and ``prune --dry-run``)."""

    name: str
    created_at: datetime
    keep: bool
    reasons: tuple[str, ...]


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def _week(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def _month(at: datetime) -> str:
    return at.strftime("%Y-%m")


# (policy field, bucket of a UTC time, reason prefix); ordered as reasons are listed.
_GFS_RULES: tuple[tuple[str, Callable[[datetime], str], str], ...] = (
    ("keep_daily", _day, "daily"),
    ("keep_weekly", _week, "weekly"),
    ("keep_monthly", _month, "monthly"),
)
GFS_LABELS = frozenset(label for _field, _bucket, label in _GFS_RULES)


def _utc(backup: Backup) -> datetime:
    if backup.created_at.tzinfo is None:
        # A naive time would silently be compared as local time; manifests always carry UTC.
        raise ValueError(f"{backup.name}: created_at has no time zone")
    return backup.created_at.astimezone(UTC)


def _newest_per_bucket(
    ordered: Sequence[Backup], bucket_of: Callable[[datetime], str], count: int
) -> dict[int, str]:
    """Index in ``ordered`` (newest first) -> bucket: the newest of each of the last ``count``."""
    kept: dict[int, str] = {}
    seen: set[str] = set()
    for index, backup in enumerate(ordered):
        if len(seen) >= count:
            break
        bucket = bucket_of(_utc(backup))
        if bucket not in seen:
            seen.add(bucket)
            kept[index] = bucket
    return kept


def plan(backups: Iterable[Backup], policy: RetentionPolicy, now: datetime) -> list[Decision]:
    """One ``Decision`` per input backup, newest first (ties broken by name, newest name first).

    Promised: the newest ``policy.keep_min`` backups that are not future-dated are kept, and
    future-dated ones are kept too but count for no rule; a backup that any rule keeps is kept
    with every such rule named in ``reasons``; applying the plan and planning again with the same
    ``now`` deletes nothing more. ``now`` and every ``created_at`` must be time-zone aware.
    """
    if now.tzinfo is None:
        raise ValueError("now has no time zone")
    ordered = sorted(backups, key=lambda b: (_utc(b), b.name), reverse=True)
    reasons: list[list[str]] = [[] for _ in ordered]
    # Indexes in ``ordered`` of the backups that may count as the newest (not future-dated).
    counted = [i for i, b in enumerate(ordered) if not future_dated(_utc(b), now)]

    for index in counted[: policy.keep_min]:
        reasons[index].append(f"newest {policy.keep_min} (BACKUP_KEEP_MIN)")

    cutoff = now - timedelta(days=policy.days)
    for index, backup in enumerate(ordered):
        created = _utc(backup)
        if future_dated(created, now):
            reasons[index].append("dated more than a day after now (clock skew or tampering?)")
        elif created > now:
            reasons[index].append("dated after now (clock skew?)")
        elif policy.days > 0 and created > cutoff:
            reasons[index].append(f"younger than {policy.days} days")

    for field, bucket_of, label in _GFS_RULES:
        count = getattr(policy, field)
        if not count:
            continue
        eligible = [ordered[i] for i in counted]
        for position, bucket in _newest_per_bucket(eligible, bucket_of, count).items():
            reasons[counted[position]].append(f"{label} {bucket}")

    if policy.days > 0:
        deleted_reason = f"older than {policy.days} days, no rule keeps it"
    else:
        deleted_reason = "no rule keeps it (BACKUP_RETENTION_DAYS=0)"
    return [
        Decision(
            name=backup.name,
            created_at=backup.created_at,
            keep=bool(why),
            reasons=tuple(why) if why else (deleted_reason,),
        )
        for backup, why in zip(ordered, reasons, strict=True)
    ]


def to_delete(backups: Iterable[Backup], policy: RetentionPolicy, now: datetime) -> list[str]:
    """Names of the backups ``plan`` deletes, newest first."""
    return [decision.name for decision in plan(backups, policy, now) if not decision.keep]
