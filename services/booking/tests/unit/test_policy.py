"""Cancellation and reschedule policy: free 24 h or more ahead; later is late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from booking.domain.errors import InvalidInput, SessionStarted
from booking.domain.policy import (
    CURRENT_POLICY,
    ChangePolicy,
    ChangeVerdict,
    judge_change,
    judge_ending,
    policy_in_force,
)

START = datetime(2026, 3, 30, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("before_start", "by", "late", "counts_as_used"),
    [
        (timedelta(days=3), "client", False, False),
        (timedelta(hours=24), "client", False, False),  # exactly 24 h: still free
        (timedelta(hours=24) - timedelta(seconds=1), "client", True, True),
        (timedelta(hours=23, minutes=59), "client", True, True),
        (timedelta(minutes=1), "client", True, True),
        (timedelta(hours=1), "therapist", True, False),  # never against the client
        (timedelta(hours=48), "therapist", False, False),
        (timedelta(hours=2), "admin", True, False),
        (timedelta(hours=2), "system", True, False),
        (timedelta(hours=2), "clinician", True, False),
    ],
)
def test_judge_change(before_start: timedelta, by: str, late: bool, counts_as_used: bool) -> None:
    verdict = judge_change(CURRENT_POLICY, START, START - before_start, by)  # type: ignore[arg-type]
    assert verdict == ChangeVerdict(
        late=late, counts_as_used=counts_as_used, policy_version="2026-01"
    )


@pytest.mark.parametrize("after_start", [timedelta(0), timedelta(minutes=5), timedelta(days=1)])
@pytest.mark.parametrize("by", ["client", "therapist"])
def test_a_started_session_cannot_change(after_start: timedelta, by: str) -> None:
    with pytest.raises(SessionStarted) as caught:
        judge_change(CURRENT_POLICY, START, START + after_start, by)  # type: ignore[arg-type]
    assert caught.value.code == "session_started"


def test_policy_is_data_with_a_version() -> None:
    strict = ChangePolicy(free_until=timedelta(hours=48), version="2027-01")
    verdict = judge_change(strict, START, START - timedelta(hours=30), "client")
    assert verdict == ChangeVerdict(late=True, counts_as_used=True, policy_version="2027-01")
    assert CURRENT_POLICY.free_until == timedelta(hours=24)


def test_other_offsets_compare_as_instants() -> None:
    from zoneinfo import ZoneInfo

    now_local = (START - timedelta(hours=25)).astimezone(ZoneInfo("Europe/Stockholm"))
    assert judge_change(CURRENT_POLICY, START, now_local, "client").late is False


def test_naive_times_and_negative_period_are_refused() -> None:
    with pytest.raises(InvalidInput):
        judge_change(CURRENT_POLICY, datetime(2026, 3, 30, 9), START, "client")
    with pytest.raises(InvalidInput):
        ChangePolicy(free_until=timedelta(hours=-1))


@pytest.mark.parametrize(
    ("before_start", "late"),
    [(timedelta(days=2), False), (timedelta(hours=2), True), (-timedelta(hours=1), True)],
)
def test_a_course_ending_never_counts_against_the_client(
    before_start: timedelta, late: bool
) -> None:
    verdict = judge_ending(CURRENT_POLICY, START, START - before_start)
    assert verdict == ChangeVerdict(late=late, counts_as_used=False, policy_version="2026-01")


def test_bookings_are_judged_by_the_policy_they_were_made_under() -> None:
    assert policy_in_force("2026-01") is CURRENT_POLICY
    with pytest.raises(KeyError):
        policy_in_force("1999-01")
