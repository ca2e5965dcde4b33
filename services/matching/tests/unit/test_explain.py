"""Codes into client words, Swedish and English."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import get_args

import pytest

from contracts.events import MatchReason, MatchReasonCode, RelaxedPreference, WaitlistReason
from matching.domain.explain import (
    explain_choice_problem,
    explain_match,
    explain_reason,
    explain_relaxed,
    explain_status,
    explain_waitlist,
    explain_waitlisted,
    language_name,
    local_time,
)
from matching.domain.lifecycle import IntakeStatus
from matching.domain.matcher import ChoiceProblem, Match, Waitlist


@pytest.mark.parametrize(
    ("reason", "sv", "en"),
    [
        (MatchReason(code="speaks_language", value="ar"), "talar arabiska", "speaks Arabic"),
        (
            MatchReason(code="works_with_area", value="grief"),
            "arbetar med sorg",
            "works with grief",
        ),
        (
            # Tuesday 4 March 2025 13:00 UTC is 14:00 in Stockholm.
            MatchReason(code="first_free_time", value="2025-03-04T13:00:00+00:00"),
            "första lediga tid tisdag 14:00 (4 mars)",
            "first free time Tuesday 14:00 (4 March)",
        ),
        (
            # Summer time: 12:00 UTC is 14:00 in Stockholm.
            MatchReason(code="first_free_time", value="2025-06-03T12:00:00+00:00"),
            "första lediga tid tisdag 14:00 (3 juni)",
            "first free time Tuesday 14:00 (3 June)",
        ),
        (MatchReason(code="offers_mode", value="video"), "erbjuder video", "offers video"),
        (MatchReason(code="in_your_city"), "finns i din stad", "is in your city"),
        (
            MatchReason(code="well_rated", value="4.8"),
            "får höga betyg av klienter (4,8 av 5)",
            "well rated by clients (4.8 of 5)",
        ),
        (MatchReason(code="chosen_by_client"), "den terapeut du valde", "the therapist you chose"),
    ],
)
def test_reasons_in_both_languages(reason: MatchReason, sv: str, en: str) -> None:
    assert explain_reason(reason, "sv") == sv
    assert explain_reason(reason, "en") == en


@pytest.mark.parametrize(
    ("code", "sv", "en"),
    [
        ("sv", "svenska", "Swedish"),
        ("en", "engelska", "English"),
        ("ar", "arabiska", "Arabic"),
        ("fa", "persiska", "Persian"),
        ("so", "somaliska", "Somali"),
        ("pl", "polska", "Polish"),
        ("es", "spanska", "Spanish"),
        ("ti", "tigrinja", "Tigrinya"),
        ("de", "tyska", "German"),
        ("fi", "finska", "Finnish"),
    ],
)
def test_language_names(code: str, sv: str, en: str) -> None:
    assert language_name(code, "sv") == sv
    assert language_name(code, "en") == en


def test_unknown_language_falls_back_to_its_code() -> None:
    assert language_name("xh", "sv") == "xh"


def test_local_time_is_stockholm() -> None:
    # 23:30 UTC on Sunday is already Monday in Stockholm.
    assert local_time(datetime(2025, 3, 2, 23, 30, tzinfo=UTC), "sv") == "måndag 00:30 (3 mars)"


def test_every_code_has_distinct_words_in_both_languages() -> None:
    for code in get_args(MatchReasonCode):
        value = "2025-03-04T13:00:00+00:00" if code == "first_free_time" else "sv"
        reason = MatchReason(code=code, value=value)
        assert explain_reason(reason, "sv") != explain_reason(reason, "en")
    for relaxed in get_args(RelaxedPreference):
        assert explain_relaxed(relaxed, "sv") != explain_relaxed(relaxed, "en")
    for waitlist in get_args(WaitlistReason):
        assert explain_waitlist(waitlist, "sv") != explain_waitlist(waitlist, "en")
    for problem in get_args(ChoiceProblem):
        assert explain_choice_problem(problem, "sv") != explain_choice_problem(problem, "en")


def test_explain_a_match_and_a_waitlist() -> None:
    m = Match(
        therapist_id=uuid.UUID(int=1),
        score=80.0,
        mode="video",
        reasons=[MatchReason(code="speaks_language", value="ar")],
        relaxed=["time_windows", "direct_choice"],
        alternatives=[],
        choice_refused=["at_capacity"],
    )
    assert explain_match(m, "sv") == [
        "talar arabiska",
        "har ingen ledig tid inom de tider du önskade",
        "terapeuten du valde kunde inte erbjudas",
        "har fullt just nu",
    ]
    assert explain_match(m, "en")[0] == "speaks Arabic"
    w = Waitlist(reasons=["no_language_match"])
    assert explain_waitlisted(w, "en") == ["no available therapist speaks any of your languages"]
    assert explain_waitlisted(w, "sv") == ["ingen ledig terapeut talar något av dina språk"]


@pytest.mark.parametrize("status", get_args(IntakeStatus))
def test_every_status_has_words_in_both_languages(status: str) -> None:
    sv, en = explain_status(status, "sv"), explain_status(status, "en")  # type: ignore[arg-type]
    assert sv and en and sv != en


def test_status_words() -> None:
    assert explain_status("waitlisted", "en").startswith("You are on the waiting list")
    assert explain_status("awaiting_triage", "sv").startswith("En behandlare")
