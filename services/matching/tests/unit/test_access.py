"""Who may open and work on an intake that needs a clinician (domain/access.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts.oncall import OnCallRoster, OnCallShift
from matching.domain import access

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
ROSTER = OnCallRoster(
    clinician_ids=[A, B, C],
    shifts=[
        OnCallShift(clinician_id=A, starts_at=T0, ends_at=T0 + timedelta(hours=8)),
        OnCallShift(
            clinician_id=B, starts_at=T0 + timedelta(hours=8), ends_at=T0 + timedelta(hours=16)
        ),
    ],
)


def test_on_call_of_the_moment_only() -> None:
    assert access.standing(A, T0, ROSTER, None, None) == "on_call"
    assert access.standing(B, T0, ROSTER, None, None) is None
    assert access.standing(B, T0 + timedelta(hours=9), ROSTER, None, None) == "on_call"
    assert access.standing(A, T0 + timedelta(hours=9), ROSTER, None, None) is None


def test_the_clinician_alerted_at_the_end_of_a_shift_opens_the_intake_after_it() -> None:
    """Escalated a minute before A's shift ends: A was alerted, and opens and triages it a
    minute after (B, on call now, too); C was on call at neither time."""
    escalated, later = T0 + timedelta(hours=8, minutes=-1), T0 + timedelta(hours=8, minutes=1)
    assert access.standing(A, later, ROSTER, None, None, alerted_at=escalated) == "alerted"
    assert access.may_work(A, later, ROSTER, None, None, escalated) == "alerted"
    assert access.standing(B, later, ROSTER, None, None, alerted_at=escalated) == "on_call"
    assert access.standing(C, later, ROSTER, None, None, alerted_at=escalated) is None
    assert access.standing(A, later, ROSTER, None, None) is None  # triaged: on call only


def test_without_a_roster_every_clinician_is_on_call() -> None:
    assert access.standing(C, T0, None, None, None) == "on_call"


def test_claimant_and_emergency_grant() -> None:
    claim = access.Claim(B, T0)
    assert access.standing(B, T0, ROSTER, claim, None) == "claimed"
    until = T0 + access.EMERGENCY_ACCESS_FOR
    assert access.standing(C, T0, ROSTER, None, until) == "emergency"
    assert access.standing(C, until, ROSTER, None, until) is None  # the grant has lapsed
    with pytest.raises(access.AccessRefused):
        access.may_open(C, until, ROSTER, None, until)


def test_a_claim_keeps_others_from_working_but_not_from_reading() -> None:
    claim = access.Claim(B, T0)
    assert access.may_open(A, T0, ROSTER, claim, None) == "on_call"
    with pytest.raises(access.ClaimedByAnother) as refused:
        access.may_work(A, T0, ROSTER, claim, None)
    assert refused.value.claim == claim
    with pytest.raises(access.ClaimedByAnother):
        access.may_claim(A, T0, ROSTER, claim, None, take_over=False)
    assert access.may_claim(A, T0, ROSTER, claim, None, take_over=True) == "on_call"
    assert access.may_work(A, T0, ROSTER, None, None) == "on_call"  # unclaimed: first there
