"""Delivery of one message on one channel: states, retries, order (docs/domain.md, Notifications).

Failed sends are retried with bounded exponential backoff; what still fails after
`MAX_ATTEMPTS` (`URGENT_MAX_ATTEMPTS` for urgent ones) is kept as `failed`, visible, and can
be re-sent by hand. Jitter
comes in as an argument (`rng() -> [0, 1)`), so every function here is pure.

    pending --success--> sent
    pending --failure--> pending (next_attempt_at set) | failed (gave up / permanent)
    failed  --resend---> pending (attempts start over)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from notifications.domain.contacts import Priority

MAX_ATTEMPTS = 6
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(minutes=30)
# Urgent messages (crisis) retry on a tighter schedule, and for longer: with six attempts
# they were given up after about two minutes of a provider's outage (the clinician's crisis
# alert with them). Seventy: one to two hours and more (the jitter) at the two-minute cap.
URGENT_BASE_DELAY = timedelta(seconds=5)
URGENT_MAX_DELAY = timedelta(minutes=2)
URGENT_MAX_ATTEMPTS = 70
MAX_ERROR_CHARS = 500

Rng = Callable[[], float]


class MessageState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed send is tried again (settings may tune it)."""

    max_attempts: int = MAX_ATTEMPTS
    base_delay: timedelta = BASE_DELAY
    max_delay: timedelta = MAX_DELAY
    urgent_base_delay: timedelta = URGENT_BASE_DELAY
    urgent_max_delay: timedelta = URGENT_MAX_DELAY
    urgent_max_attempts: int = URGENT_MAX_ATTEMPTS


DEFAULT_POLICY = RetryPolicy()


def backoff_delay(
    attempts: int, rng: Rng, priority: Priority = "normal", policy: RetryPolicy = DEFAULT_POLICY
) -> timedelta:
    """The wait after `attempts` failed attempts (>= 1): base * 2^(attempts-1), capped,
    then 'equal jitter' (between half and all of it), so it stays within [cap/2, cap]."""
    if attempts < 1:
        raise ValueError("attempts counts failed attempts and starts at 1")
    base, cap = (
        (policy.urgent_base_delay, policy.urgent_max_delay)
        if priority == "urgent"
        else (policy.base_delay, policy.max_delay)
    )
    ceiling = min(cap, base * (1 << min(attempts - 1, 30)))
    jitter = min(max(rng(), 0.0), 1.0)
    return ceiling / 2 + (ceiling / 2) * jitter


def should_give_up(
    attempts: int, policy: RetryPolicy = DEFAULT_POLICY, priority: Priority = "normal"
) -> bool:
    limit = policy.urgent_max_attempts if priority == "urgent" else policy.max_attempts
    return attempts >= limit


def next_attempt_at(
    attempts: int,
    now: datetime,
    rng: Rng,
    priority: Priority = "normal",
    policy: RetryPolicy = DEFAULT_POLICY,
) -> datetime | None:
    """When to try again after `attempts` failures; None when it is time to give up."""
    if should_give_up(attempts, policy, priority):
        return None
    return now + backoff_delay(attempts, rng, priority, policy)


class Delivery(BaseModel):
    """The delivery state of one message on one channel."""

    model_config = ConfigDict(frozen=True)

    state: MessageState = MessageState.PENDING
    priority: Priority = "normal"
    attempts: int = Field(default=0, ge=0)
    due_at: AwareDatetime
    sent_at: AwareDatetime | None = None
    last_error: str | None = None

    def is_due(self, now: datetime) -> bool:
        return self.state is MessageState.PENDING and self.due_at <= now


def record_sent(d: Delivery, now: datetime) -> Delivery:
    if d.state is not MessageState.PENDING:
        raise InvalidTransition(f"cannot mark a {d.state} message sent")
    return d.model_copy(
        update={"state": MessageState.SENT, "attempts": d.attempts + 1, "sent_at": now}
    )


def record_failure(
    d: Delivery,
    now: datetime,
    error: str,
    rng: Rng,
    *,
    permanent: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Delivery:
    """A failed attempt: retry later, or `failed` when attempts run out or it is permanent
    (e.g. the provider rejected the address)."""
    if d.state is not MessageState.PENDING:
        raise InvalidTransition(f"cannot record a failure of a {d.state} message")
    attempts = d.attempts + 1
    error = error[:MAX_ERROR_CHARS]
    retry_at = None if permanent else next_attempt_at(attempts, now, rng, d.priority, policy)
    if retry_at is None:
        return d.model_copy(
            update={"state": MessageState.FAILED, "attempts": attempts, "last_error": error}
        )
    return d.model_copy(update={"attempts": attempts, "due_at": retry_at, "last_error": error})


def resend(d: Delivery, now: datetime) -> Delivery:
    """A person re-sends a failed message: pending again, due now, attempts start over."""
    if d.state is not MessageState.FAILED:
        raise InvalidTransition(f"only a failed message can be re-sent, not a {d.state} one")
    return d.model_copy(update={"state": MessageState.PENDING, "attempts": 0, "due_at": now})


def dispatch_order(priority: Priority, due_at: datetime) -> tuple[int, datetime]:
    """Sort key for due messages: urgent before anything queued, then oldest first."""
    return (0 if priority == "urgent" else 1, due_at)
