"""Which step may follow which (domain/lifecycle.py)."""

from __future__ import annotations

import uuid
from typing import get_args

import pytest

from matching.domain.lifecycle import (
    AWAITING_CLINICIAN,
    IN_PROGRESS,
    MATCHABLE,
    REPLACEABLE,
    RETRYABLE,
    IntakeInProgress,
    IntakeStatus,
    StepRefused,
    check_one_at_a_time,
    decide_match,
    match_status_on_match,
    status_on_match,
    status_on_submit,
    switch,
    triage,
)
from matching.domain.screening import screen

ALL: tuple[str, ...] = get_args(IntakeStatus)


def test_high_risk_is_held_for_triage_and_never_matchable() -> None:
    held = status_on_submit(screen(30, [0] * 8 + [1], ["grief"]))
    assert held == "awaiting_triage"
    assert held not in MATCHABLE and held not in RETRYABLE
    assert held in AWAITING_CLINICIAN


def test_one_intake_in_progress_but_a_crisis_always_gets_through() -> None:
    open_one = uuid.uuid4()
    standard = screen(30, [3] * 8 + [0], ["grief"])
    with pytest.raises(IntakeInProgress) as refused:
        check_one_at_a_time(standard, open_one)
    assert refused.value.intake_id == open_one
    assert set(refused.value.messages) == {"sv", "en"}
    check_one_at_a_time(standard, None)
    check_one_at_a_time(screen(30, [0] * 8 + [1], ["grief"]), open_one)  # high risk: taken
    # Every state but those an intake ends in (matched counts until its course ends), and
    # a new intake replaces one still waiting for a therapist.
    assert set(ALL) - set(IN_PROGRESS) == {"matched", "referred_elsewhere", "replaced"}
    assert set(REPLACEABLE) == {"matching", "waitlisted"}


def test_standard_risk_goes_to_the_matcher() -> None:
    assert status_on_submit(screen(30, [3] * 8 + [0], ["grief"])) in MATCHABLE


def test_only_the_matcher_state_is_matchable_and_only_the_waitlist_retried() -> None:
    assert MATCHABLE == {"matching"}
    assert RETRYABLE == {"waitlisted"}


def test_severe_matches_wait_for_a_clinician() -> None:
    assert status_on_match(requires_approval=True) == "awaiting_approval"
    assert match_status_on_match(requires_approval=True) == "proposed"
    assert status_on_match(requires_approval=False) == "matched"
    assert match_status_on_match(requires_approval=False) == "active"


def test_triage_resumes_or_refers() -> None:
    assert triage("awaiting_triage", "resume_matching") == "matching"
    assert triage("awaiting_triage", "refer_elsewhere") == "referred_elsewhere"


@pytest.mark.parametrize("status", [s for s in ALL if s != "awaiting_triage"])
def test_triage_only_while_awaiting_it(status: str) -> None:
    with pytest.raises(StepRefused, match="not waiting for triage"):
        triage(status, "resume_matching")


def test_a_clinician_decides_only_a_proposed_match_awaiting_approval() -> None:
    decide_match("awaiting_approval", "proposed")
    for status, match_status in [
        ("matched", "active"),
        ("awaiting_approval", "rejected"),
        ("matching", "proposed"),
    ]:
        with pytest.raises(StepRefused):
            decide_match(status, match_status)


@pytest.mark.parametrize("status", [s for s in ALL if s != "matched"])
def test_switching_needs_a_match_in_force(status: str) -> None:
    with pytest.raises(StepRefused, match="once you have been matched"):
        switch(status)


def test_switching_a_match_in_force() -> None:
    switch("matched")
