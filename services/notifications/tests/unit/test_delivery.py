from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from notifications.domain.delivery import (
    BASE_DELAY,
    DEFAULT_POLICY,
    MAX_ATTEMPTS,
    MAX_DELAY,
    URGENT_MAX_ATTEMPTS,
    URGENT_MAX_DELAY,
    Delivery,
    InvalidTransition,
    MessageState,
    RetryPolicy,
    backoff_delay,
    dispatch_order,
    next_attempt_at,
    record_failure,
    record_sent,
    resend,
    should_give_up,
)

NOW = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)


def fixed(value: float) -> Callable[[], float]:
    """A deterministic 'random' source."""
    return lambda: value


def test_backoff_increases_then_stays_bounded() -> None:
    delays = [backoff_delay(n, fixed(0.5)) for n in range(1, 20)]
    growing = delays[: next(i for i, d in enumerate(delays) if d >= delays[-1]) + 1]
    assert len(growing) >= 4
    assert all(a < b for a, b in itertools.pairwise(growing))
    assert all(d <= MAX_DELAY for d in delays)
    assert delays[-1] == delays[-2]  # capped


def test_first_retry_waits_between_half_and_all_of_the_base_delay() -> None:
    assert backoff_delay(1, fixed(0.0)) == BASE_DELAY / 2
    assert backoff_delay(1, fixed(0.999999)) <= BASE_DELAY
    assert backoff_delay(2, fixed(0.0)) == BASE_DELAY


def test_jitter_spreads_within_the_bound() -> None:
    low, high = backoff_delay(3, fixed(0.0)), backoff_delay(3, fixed(0.99))
    assert low < high <= BASE_DELAY * 4
    assert backoff_delay(50, fixed(1.0)) == MAX_DELAY
    assert backoff_delay(50, fixed(7.0)) == MAX_DELAY  # a bad rng cannot break the bound
    assert backoff_delay(50, fixed(-1.0)) == MAX_DELAY / 2


def test_urgent_messages_retry_sooner() -> None:
    for n in range(1, MAX_ATTEMPTS):
        assert backoff_delay(n, fixed(0.5), "urgent") < backoff_delay(n, fixed(0.5))
        assert backoff_delay(n, fixed(1.0), "urgent") <= URGENT_MAX_DELAY


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, fixed(0.5))


def test_give_up_after_max_attempts() -> None:
    assert MAX_ATTEMPTS == 6
    assert not should_give_up(MAX_ATTEMPTS - 1)
    assert should_give_up(MAX_ATTEMPTS)
    assert next_attempt_at(MAX_ATTEMPTS, NOW, fixed(0.5)) is None
    assert next_attempt_at(1, NOW, fixed(0.5)) == NOW + backoff_delay(1, fixed(0.5))


def test_an_urgent_message_is_tried_through_an_outage_of_an_hour() -> None:
    """A crisis message (urgent) keeps being tried for an hour or more of a provider's
    outage, on the urgent schedule (never more than URGENT_MAX_DELAY apart); a normal one
    is given up after MAX_ATTEMPTS as before."""
    urgent, normal = Delivery(due_at=NOW, priority="urgent"), Delivery(due_at=NOW)
    for _ in range(MAX_ATTEMPTS):
        normal = record_failure(normal, normal.due_at, "SMTP down", fixed(1.0))
    assert normal.state is MessageState.FAILED
    waited = []
    while urgent.state is MessageState.PENDING:
        before = urgent.due_at
        urgent = record_failure(urgent, before, "SMTP down", fixed(0.0))
        if urgent.state is MessageState.PENDING:
            waited.append(urgent.due_at - before)
    assert urgent.attempts == URGENT_MAX_ATTEMPTS
    assert max(waited) <= URGENT_MAX_DELAY
    assert sum(waited, timedelta()) >= timedelta(hours=1)  # at the shortest jitter


def test_failures_retry_until_the_message_is_kept_as_failed() -> None:
    d = Delivery(due_at=NOW)
    now = NOW
    for attempt in range(1, MAX_ATTEMPTS):
        d = record_failure(d, now, "smtp 451 try later", fixed(0.5))
        assert d.state is MessageState.PENDING
        assert d.attempts == attempt
        assert d.due_at > now
        assert not d.is_due(now)
        assert d.is_due(d.due_at)
        now = d.due_at
    d = record_failure(d, now, "smtp 451 try later", fixed(0.5))
    assert d.state is MessageState.FAILED
    assert d.attempts == MAX_ATTEMPTS
    assert d.last_error == "smtp 451 try later"
    assert not d.is_due(now + timedelta(days=1))


def test_permanent_failure_fails_at_once() -> None:
    d = record_failure(Delivery(due_at=NOW), NOW, "550 no such user", fixed(0.5), permanent=True)
    assert d.state is MessageState.FAILED
    assert d.attempts == 1


def test_long_errors_are_cut() -> None:
    d = record_failure(Delivery(due_at=NOW), NOW, "x" * 10_000, fixed(0.5))
    assert d.last_error is not None and len(d.last_error) == 500


def test_success_marks_sent() -> None:
    d = record_sent(Delivery(due_at=NOW), NOW)
    assert d.state is MessageState.SENT
    assert d.sent_at == NOW
    assert d.attempts == 1


def test_a_failed_message_can_be_resent() -> None:
    failed = record_failure(Delivery(due_at=NOW), NOW, "gone", fixed(0.5), permanent=True)
    later = NOW + timedelta(hours=3)
    again = resend(failed, later)
    assert again.state is MessageState.PENDING
    assert again.attempts == 0
    assert again.is_due(later)


def test_invalid_transitions_are_refused() -> None:
    sent = record_sent(Delivery(due_at=NOW), NOW)
    with pytest.raises(InvalidTransition):
        record_sent(sent, NOW)
    with pytest.raises(InvalidTransition):
        record_failure(sent, NOW, "late", fixed(0.5))
    with pytest.raises(InvalidTransition):
        resend(sent, NOW)
    with pytest.raises(InvalidTransition):
        resend(Delivery(due_at=NOW), NOW)


def test_urgent_goes_ahead_of_anything_queued() -> None:
    queue = [
        ("old normal", dispatch_order("normal", NOW - timedelta(hours=2))),
        ("urgent", dispatch_order("urgent", NOW)),
        ("new normal", dispatch_order("normal", NOW - timedelta(minutes=1))),
        ("older urgent", dispatch_order("urgent", NOW - timedelta(minutes=1))),
    ]
    assert [name for name, _ in sorted(queue, key=lambda q: q[1])] == [
        "older urgent",
        "urgent",
        "old normal",
        "new normal",
    ]


def test_a_retry_policy_from_settings_tunes_attempts_and_delays() -> None:
    policy = RetryPolicy(
        max_attempts=2,
        base_delay=timedelta(seconds=1),
        max_delay=timedelta(seconds=3),
        urgent_base_delay=timedelta(milliseconds=100),
        urgent_max_delay=timedelta(milliseconds=300),
    )
    assert backoff_delay(1, fixed(1.0), policy=policy) == timedelta(seconds=1)
    assert backoff_delay(9, fixed(1.0), policy=policy) == timedelta(seconds=3)
    assert backoff_delay(9, fixed(1.0), "urgent", policy) == timedelta(milliseconds=300)
    d = record_failure(Delivery(due_at=NOW), NOW, "503", fixed(0.0), policy=policy)
    assert d.state is MessageState.PENDING and d.due_at == NOW + timedelta(milliseconds=500)
    d = record_failure(d, d.due_at, "503", fixed(0.0), policy=policy)
    assert d.state is MessageState.FAILED and d.attempts == 2
    assert DEFAULT_POLICY.max_attempts == MAX_ATTEMPTS
