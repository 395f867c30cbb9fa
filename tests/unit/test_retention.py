"""Retention is pure: plain examples worked out by hand, then properties checked by hypothesis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup.config import RetentionPolicy
from backup.retention import FUTURE_TOLERANCE, Decision, plan, to_delete
from tests.fixtures.examples import examples

NOW = datetime(2025, 11, 10, 3, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Manifest:
    name: str
    created_at: datetime


def daily(count: int, start: datetime = NOW, step: timedelta = timedelta(days=1)) -> list[Manifest]:
    """``count`` backups, the newest at ``start``, one every ``step`` going back."""
    return [
        Manifest(f"shop-{(start - i * step):%Y%m%dT%H%M%SZ}", start - i * step)
        for i in range(count)
    ]


def kept(decisions: list[Decision]) -> list[str]:
    return [d.name for d in decisions if d.keep]


def test_defaults_keep_30_days_of_daily_backups() -> None:
    backups = daily(40)
    decisions = plan(backups, RetentionPolicy(), NOW)
    # Ages 0..29 days are younger than 30 days; day 30 and older go.
    assert kept(decisions) == [b.name for b in backups[:30]]
    assert to_delete(backups, RetentionPolicy(), NOW) == [b.name for b in backups[30:]]
    assert decisions[0].reasons == ("newest 3 (BACKUP_KEEP_MIN)", "younger than 30 days")
    assert decisions[10].reasons == ("younger than 30 days",)
    assert decisions[35].reasons == ("older than 30 days, no rule keeps it",)


def test_old_backups_still_keep_the_newest_keep_min() -> None:
    # The job stopped running 100 days ago: the last three backups must survive anyway.
    backups = daily(10, start=NOW - timedelta(days=100))
    assert to_delete(backups, RetentionPolicy(), NOW) == [b.name for b in backups[3:]]
    assert plan(backups, RetentionPolicy(), NOW)[2].reasons == ("newest 3 (BACKUP_KEEP_MIN)",)


def test_empty_input() -> None:
    assert plan([], RetentionPolicy(), NOW) == []
    assert to_delete([], RetentionPolicy(), NOW) == []


def test_future_dated_backups_are_kept_even_without_an_age_rule() -> None:
    future = Manifest("shop-future", NOW + timedelta(hours=2))
    backups = [future, *daily(5, start=NOW - timedelta(days=10))]
    decisions = plan(backups, RetentionPolicy(days=0, keep_min=1), NOW)
    assert decisions[0] == Decision(
        "shop-future",
        future.created_at,
        True,
        ("newest 1 (BACKUP_KEEP_MIN)", "dated after now (clock skew?)"),
    )
    assert [d.keep for d in decisions[1:]] == [False] * 5
    assert decisions[1].reasons == ("no rule keeps it (BACKUP_RETENTION_DAYS=0)",)


def test_far_future_backups_take_no_keep_min_slot_and_no_gfs_slot() -> None:
    # Three manifests dated a week ahead (a skewed clock, or planted): retention must still keep
    # the newest real backups, and must not delete the planted ones either.
    planted = [Manifest(f"shop-planted{i}", NOW + timedelta(days=7, hours=i)) for i in range(3)]
    real = daily(5, start=NOW - timedelta(days=40))
    decisions = {d.name: d for d in plan([*planted, *real], RetentionPolicy(keep_min=3), NOW)}
    assert [decisions[b.name].keep for b in real] == [True, True, True, False, False]
    assert decisions[real[0].name].reasons == ("newest 3 (BACKUP_KEEP_MIN)",)
    for fake in planted:
        assert decisions[fake.name].reasons == (
            "dated more than a day after now (clock skew or tampering?)",
        )
    weekly = RetentionPolicy(days=0, keep_min=0, keep_daily=2)
    decisions = {d.name: d for d in plan([*planted, *real], weekly, NOW)}
    assert [decisions[b.name].keep for b in real] == [True, True, False, False, False]


def test_input_order_does_not_matter_and_output_is_newest_first() -> None:
    backups = daily(8)
    shuffled = backups[3:] + backups[:3][::-1]
    decisions = plan(shuffled, RetentionPolicy(days=2, keep_min=1), NOW)
    assert [d.name for d in decisions] == [b.name for b in backups]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        plan([Manifest("x", datetime(2025, 1, 1))], RetentionPolicy(), NOW)
    with pytest.raises(ValueError, match="time zone"):
        plan([], RetentionPolicy(), datetime(2025, 1, 1))


def test_keep_daily_takes_the_newest_backup_of_each_day() -> None:
    # Two backups a day (03:00 and 15:00) for 5 days.
    backups = daily(
        10, start=NOW + timedelta(hours=12) - timedelta(days=1), step=timedelta(hours=12)
    )
    policy = RetentionPolicy(days=0, keep_min=1, keep_daily=3)
    decisions = plan(backups, policy, NOW + timedelta(days=1))
    assert [(d.name, d.reasons) for d in decisions if d.keep] == [
        ("shop-20251109T150000Z", ("newest 1 (BACKUP_KEEP_MIN)", "daily 2025-11-09")),
        ("shop-20251108T150000Z", ("daily 2025-11-08",)),
        ("shop-20251107T150000Z", ("daily 2025-11-07",)),
    ]


def test_gfs_counts_only_periods_that_have_backups() -> None:
    # Sundays 2025-11-09, 2025-11-02 and 2025-10-05: no backups in the weeks between.
    backups = [
        Manifest("a", datetime(2025, 11, 9, 3, tzinfo=UTC)),  # 2025-W45
        Manifest("b", datetime(2025, 11, 3, 3, tzinfo=UTC)),  # Monday, 2025-W45
        Manifest("c", datetime(2025, 11, 2, 3, tzinfo=UTC)),  # 2025-W44
        Manifest("d", datetime(2025, 10, 5, 3, tzinfo=UTC)),  # 2025-W40
        Manifest("e", datetime(2025, 9, 28, 3, tzinfo=UTC)),  # 2025-W39
    ]
    policy = RetentionPolicy(days=0, keep_min=1, keep_weekly=3, keep_monthly=2)
    decisions = {d.name: d for d in plan(backups, policy, NOW)}
    assert decisions["a"].reasons == (
        "newest 1 (BACKUP_KEEP_MIN)",
        "weekly 2025-W45",
        "monthly 2025-11",
    )
    assert not decisions["b"].keep  # an older backup of the same week and month
    assert decisions["c"].reasons == ("weekly 2025-W44",)
    assert decisions["d"].reasons == ("weekly 2025-W40", "monthly 2025-10")
    assert not decisions["e"].keep  # fourth week with backups, third month with backups


def test_iso_weeks_cross_the_year_boundary() -> None:
    # 2026-01-01 is a Thursday: it belongs to 2026-W01, and so does Monday 2025-12-29.
    backups = [
        Manifest("thu", datetime(2026, 1, 1, tzinfo=UTC)),
        Manifest("mon", datetime(2025, 12, 29, tzinfo=UTC)),
        Manifest("sun", datetime(2025, 12, 28, tzinfo=UTC)),
    ]
    policy = RetentionPolicy(days=0, keep_min=1, keep_weekly=2)
    decisions = plan(backups, policy, datetime(2026, 1, 2, tzinfo=UTC))
    assert [d.reasons for d in decisions] == [
        ("newest 1 (BACKUP_KEEP_MIN)", "weekly 2026-W01"),
        ("no rule keeps it (BACKUP_RETENTION_DAYS=0)",),
        ("weekly 2025-W52",),
    ]


def test_created_at_in_another_zone_is_bucketed_in_utc() -> None:
    from datetime import timezone

    tokyo = timezone(timedelta(hours=9))
    # 08:00 in Tokyo on the 10th is 23:00 UTC on the 9th.
    backup = Manifest("x", datetime(2025, 11, 10, 8, tzinfo=tokyo))
    decision = plan([backup], RetentionPolicy(days=0, keep_min=0, keep_daily=1), NOW)[0]
    assert decision.reasons == ("daily 2025-11-09",)


# --- properties -------------------------------------------------------------------------------

times = st.datetimes(
    min_value=datetime(2024, 1, 1),  # hypothesis wants naive bounds
    max_value=datetime(2026, 1, 1),
    timezones=st.just(UTC),
)
backup_lists = st.lists(times, max_size=60).map(
    lambda ts: [Manifest(f"b{i}", t) for i, t in enumerate(ts)]
)
optional_count = st.none() | st.integers(min_value=0, max_value=8)
policies = st.builds(
    RetentionPolicy,
    days=st.integers(min_value=0, max_value=400),
    keep_min=st.integers(min_value=0, max_value=10),
    keep_daily=optional_count,
    keep_weekly=optional_count,
    keep_monthly=optional_count,
)


def newest_first(backups: list[Manifest]) -> list[Manifest]:
    return sorted(backups, key=lambda b: (b.created_at, b.name), reverse=True)


def must_keep(backups: list[Manifest], policy: RetentionPolicy, now: datetime) -> set[str]:
    """Every rule recomputed on its own, the slow obvious way."""
    everything = newest_first(backups)
    keep = {b.name for b in everything if b.created_at > now}
    # Future-dated backups (beyond the tolerance) are kept but count for no other rule.
    ordered = [b for b in everything if b.created_at - now <= FUTURE_TOLERANCE]
    keep |= {b.name for b in ordered[: policy.keep_min]}
    if policy.days:
        keep |= {b.name for b in ordered if now - b.created_at < timedelta(days=policy.days)}
    for count, key in (
        (policy.keep_daily, lambda t: t.date()),
        (policy.keep_weekly, lambda t: t.isocalendar()[:2]),
        (policy.keep_monthly, lambda t: (t.year, t.month)),
    ):
        if not count:
            continue
        buckets = sorted({key(b.created_at) for b in ordered}, reverse=True)[:count]
        for bucket in buckets:
            keep.add(next(b.name for b in ordered if key(b.created_at) == bucket))
    return keep


@settings(max_examples=examples(300), deadline=None)
@given(backups=backup_lists, policy=policies, now=times)
def test_properties(backups: list[Manifest], policy: RetentionPolicy, now: datetime) -> None:
    decisions = plan(backups, policy, now)
    names = {b.name for b in backups}
    deleted = to_delete(backups, policy, now)

    # One decision per input backup, newest first; deletions only among the input.
    assert sorted(d.name for d in decisions) == sorted(names)
    assert [d.name for d in decisions] == [b.name for b in newest_first(backups)]
    assert set(deleted) <= names
    assert deleted == [d.name for d in decisions if not d.keep]
    assert all(d.reasons for d in decisions)

    # Never deletes the newest keep_min, nor anything another rule keeps; keeps nothing else.
    real = [b for b in newest_first(backups) if b.created_at - now <= FUTURE_TOLERANCE]
    newest = {b.name for b in real[: policy.keep_min]}
    assert not newest & set(deleted)
    assert {d.name for d in decisions if d.keep} == must_keep(backups, policy, now)
    # A backup dated more than a day ahead never takes one of the newest keep_min places.
    newest_reason = f"newest {policy.keep_min} (BACKUP_KEEP_MIN)"
    for decision in decisions:
        if decision.created_at - now > FUTURE_TOLERANCE:
            assert decision.keep and newest_reason not in decision.reasons

    # Idempotent: planning again on the survivors with the same now deletes nothing more.
    survivors = [b for b in backups if b.name not in set(deleted)]
    assert to_delete(survivors, policy, now) == []
