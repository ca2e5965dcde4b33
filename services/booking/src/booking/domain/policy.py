"""Cancellation and reschedule policy (docs/domain.md, Booking).

The policy is data with a version, because the version in force is stored with each booking:
a later change of policy must not change the verdict for sessions booked under the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from booking.domain.clock import as_utc
from booking.domain.errors import InvalidInput, SessionStarted
from contracts.vocabulary import Actor


@dataclass(frozen=True)
class ChangePolicy:
    """A change at least `free_until` before the start is free; later is late."""

    free_until: timedelta = timedelta(hours=24)
    version: str = "2026-01"

    def __post_init__(self) -> None:
        if self.free_until < timedelta(0):
            raise InvalidInput("negative_free_period", "The free change period cannot be negative.")


CURRENT_POLICY = ChangePolicy()
# Every version ever in force: a booking is judged by the one it was made under.
POLICIES: dict[str, ChangePolicy] = {CURRENT_POLICY.version: CURRENT_POLICY}


def policy_in_force(version: str) -> ChangePolicy:
    """The policy a booking was made under (an unknown version is a bug, not a user error)."""
    return POLICIES[version]


@dataclass(frozen=True)
class ChangeVerdict:
    late: bool
    counts_as_used: bool
    policy_version: str


def judge_change(
    policy: ChangePolicy, starts_at: datetime, now: datetime, by: Actor
) -> ChangeVerdict:
    """Judge a cancellation or reschedule made at `now` by `by`.

    Only the client's own late change counts as used: a change by the therapist (or a
    clinician, admin or the system) never counts against the client, though its lateness is
    still recorded.
    """
    starts_at, now = as_utc(starts_at, "session start"), as_utc(now, "current time")
    if now >= starts_at:
        raise SessionStarted()
    late = starts_at - now < policy.free_until
    return ChangeVerdict(
        late=late, counts_as_used=late and by == "client", policy_version=policy.version
    )


def judge_ending(policy: ChangePolicy, starts_at: datetime, now: datetime) -> ChangeVerdict:
    """A session cancelled because its course ended (early, or by a switch of therapist):
    never counted against the client; late when inside the free period or already begun."""
    starts_at, now = as_utc(starts_at, "session start"), as_utc(now, "current time")
    return ChangeVerdict(
        late=starts_at - now < policy.free_until,
        counts_as_used=False,
        policy_version=policy.version,
    )
