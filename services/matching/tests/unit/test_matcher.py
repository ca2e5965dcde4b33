"""The matcher: hard filters, score, reasons, relaxed preferences (docs/domain.md, Matching)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import WaitlistReason
from matching.domain.intake import Intake, WeeklyWindow
from matching.domain.matcher import (
    MAX_ALTERNATIVES,
    IntakeNeeds,
    Match,
    TherapistCandidate,
    Waitlist,
    WindowCheck,
    bayesian_rating,
    failed_filters,
    in_windows,
    match,
    passes_hard_filters,
)
from matching.domain.screening import screen_intake

# Monday 3 March 2025, 08:00 UTC (09:00 in Stockholm, winter time).
NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
TUESDAY_AFTERNOON = [WeeklyWindow(weekday=1, start=time(13), end=time(17))]
# Tuesday 4 March 14:00 Stockholm = 13:00 UTC: inside the window.
IN_WINDOW = datetime(2025, 3, 4, 13, 0, tzinfo=UTC)


def tid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def therapist(n: int = 1, **changes: Any) -> TherapistCandidate:
    """A candidate that fits `needs()` on every hard filter."""
    base = TherapistCandidate(
        therapist_id=tid(n),
        profession="psychologist",
        licensed=True,
        methods=["IPT"],
        focus_areas=["grief"],
        languages=["sv"],
        modes=["video", "in_person"],
        city="Malmö",
        age_groups=["adults"],
        capacity=10,
        active_courses=5,
        accepting_new_clients=True,
        rating_average=4.5,
        rating_count=10,
        free_slots=[IN_WINDOW],
    )
    return dataclasses.replace(base, **changes)


def needs(**changes: Any) -> IntakeNeeds:
    base = IntakeNeeds(
        intake_id=tid(1000),
        method="IPT",
        age_group="adults",
        problem_areas=["grief"],
        languages=["sv"],
        preferred_mode="video",
        city="Malmö",
        time_windows=TUESDAY_AFTERNOON,
    )
    return dataclasses.replace(base, **changes)


def matched(result: Match | Waitlist) -> Match:
    assert isinstance(result, Match), result
    return result


def codes(m: Match) -> dict[str, str | None]:
    return {r.code: r.value for r in m.reasons}


# --------------------------------------------------------------------------- hard filters


def test_fitting_candidate_passes_every_filter() -> None:
    assert failed_filters(therapist(), needs()) == []
    assert matched(match(needs(), [therapist()], NOW)).therapist_id == tid(1)


@pytest.mark.parametrize(
    ("changes", "need_changes", "failed"),
    [
        ({"accepting_new_clients": False}, {}, "not_accepting"),
        ({"active_courses": 10}, {}, "at_capacity"),
        ({"active_courses": 11}, {}, "at_capacity"),
        ({"methods": ["KBT"]}, {}, "method"),
        ({"methods": ["IPT-A"]}, {}, "method"),
        ({"licensed": False}, {"requires_licensed": True}, "licence"),
        ({"profession": "certified_staff"}, {"requires_licensed": True}, "licence"),
        ({"age_groups": ["adolescents"]}, {}, "age_group"),
        ({"languages": ["en"]}, {}, "language"),
        ({"modes": ["in_person"]}, {}, "mode"),
        ({"modes": ["video"]}, {"preferred_mode": "in_person"}, "mode"),
        ({"city": "Lund"}, {"preferred_mode": "in_person"}, "mode"),
        ({"city": None}, {"preferred_mode": "in_person"}, "mode"),
        ({"modes": ["in_person"], "city": "Lund"}, {"preferred_mode": "either"}, "mode"),
    ],
)
def test_each_hard_filter_excludes_an_otherwise_fitting_candidate(
    changes: dict[str, Any], need_changes: dict[str, Any], failed: str
) -> None:
    n = needs(**need_changes)
    c = therapist(**changes)
    assert failed_filters(c, n) == [failed]
    assert not passes_hard_filters(c, n)
    result = match(n, [c], NOW)
    assert isinstance(result, Waitlist)


def test_certified_staff_qualify_for_a_method_they_are_certified_in() -> None:
    staff = therapist(profession="certified_staff", licensed=False)
    assert failed_filters(staff, needs()) == []


def test_severe_case_takes_a_licensed_psychotherapist() -> None:
    c = therapist(profession="psychotherapist")
    m = matched(match(needs(requires_licensed=True), [c], NOW))
    assert "licensed_for_severity" in codes(m)


def test_in_person_city_is_case_insensitive() -> None:
    n = needs(preferred_mode="in_person", city="malmö ")
    m = matched(match(n, [therapist(city="MALMÖ")], NOW))
    assert m.mode == "in_person"
    assert "in_your_city" in codes(m)


def test_any_one_of_the_clients_languages_is_enough() -> None:
    n = needs(languages=["ar", "en"])
    assert failed_filters(therapist(languages=["en"]), n) == []


@pytest.mark.parametrize(
    ("modes", "city", "expected"),
    [
        (["video", "in_person"], "Malmö", "in_person"),
        (["video", "in_person"], "Lund", "video"),
        (["video"], "Malmö", "video"),
        (["in_person"], "Malmö", "in_person"),
    ],
)
def test_either_accepts_video_or_in_person_in_the_city(
    modes: list[str], city: str, expected: str
) -> None:
    m = matched(match(needs(preferred_mode="either"), [therapist(modes=modes, city=city)], NOW))
    assert m.mode == expected
    assert "mode" not in m.relaxed


# --------------------------------------------------------------------------- scoring


def best(n: IntakeNeeds, *candidates: TherapistCandidate) -> uuid.UUID:
    return matched(match(n, list(candidates), NOW)).therapist_id


def test_problem_area_overlap_wins() -> None:
    n = needs(problem_areas=["grief", "role_transition"])
    one = therapist(1, focus_areas=["grief"])
    both = therapist(2, focus_areas=["grief", "role_transition"])
    none = therapist(3, focus_areas=["anxiety"])
    assert best(n, one, both, none) == tid(2)
    assert best(n, one, none) == tid(1)


def test_first_ranked_language_wins() -> None:
    n = needs(languages=["ar", "sv"])
    assert best(n, therapist(1, languages=["sv"]), therapist(2, languages=["ar"])) == tid(2)


def test_earlier_slot_in_window_wins() -> None:
    later = IN_WINDOW + timedelta(weeks=1)
    assert best(
        needs(), therapist(1, free_slots=[later]), therapist(2, free_slots=[IN_WINDOW])
    ) == (tid(2))


def test_slot_inside_the_window_beats_an_earlier_one_outside() -> None:
    outside = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # Monday, not in a Tuesday window
    inside = IN_WINDOW + timedelta(weeks=1)
    assert best(needs(), therapist(1, free_slots=[outside]), therapist(2, free_slots=[inside])) == (
        tid(2)
    )


def test_past_slots_do_not_count() -> None:
    past = NOW - timedelta(days=1)
    m = matched(match(needs(), [therapist(free_slots=[past])], NOW))
    assert "first_free_time" not in codes(m)
    assert "time_windows" in m.relaxed


def test_window_is_in_stockholm_time_across_daylight_saving() -> None:
    # Tuesday 1 April 2025 (summer time, UTC+2): 14:00 local is 12:00 UTC.
    summer = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
    m = matched(match(needs(), [therapist(free_slots=[summer])], NOW))
    assert "time_windows" not in m.relaxed
    # 16:00 UTC is 18:00 local: after the window.
    m = matched(match(needs(), [therapist(free_slots=[summer.replace(hour=16)])], NOW))
    assert "time_windows" in m.relaxed


def test_less_loaded_wins() -> None:
    busy = therapist(1, active_courses=8)
    free = therapist(2, active_courses=2)
    assert best(needs(), busy, free) == tid(2)


def test_load_is_relative_to_capacity() -> None:
    small = therapist(1, active_courses=2, capacity=3)  # two thirds full
    large = therapist(2, active_courses=4, capacity=20)  # a fifth full
    assert best(needs(), small, large) == tid(2)


def test_higher_rating_wins() -> None:
    assert best(needs(), therapist(1, rating_average=4.0), therapist(2, rating_average=4.9)) == (
        tid(2)
    )


def test_one_perfect_review_does_not_beat_many_good_ones() -> None:
    lucky = therapist(1, rating_average=5.0, rating_count=1)
    steady = therapist(2, rating_average=4.8, rating_count=40)
    assert bayesian_rating(5.0, 1) < bayesian_rating(4.8, 40)
    assert best(needs(), lucky, steady) == tid(2)


def test_unrated_therapist_gets_the_prior() -> None:
    assert bayesian_rating(None, 0) == bayesian_rating(4.0, 100) == 4.0


def test_score_is_within_0_and_100() -> None:
    perfect = therapist(active_courses=0, rating_average=5.0, rating_count=10_000, free_slots=[NOW])
    m = matched(match(needs(time_windows=[]), [perfect], NOW))
    assert 99 <= m.score <= 100
    poor = therapist(
        languages=["sv"],
        focus_areas=[],
        active_courses=9,
        rating_average=1.0,
        rating_count=10_000,
        free_slots=[],
    )
    m = matched(match(needs(languages=["ar", "fa", "sv"]), [poor], NOW))
    assert 0 <= m.score < 15


def test_ties_break_by_therapist_id() -> None:
    a, b, c = therapist(3), therapist(1), therapist(2)
    m = matched(match(needs(), [a, b, c], NOW))
    assert m.therapist_id == tid(1)
    assert [x.therapist_id for x in m.alternatives] == [tid(2), tid(3)]


def test_result_does_not_depend_on_candidate_order() -> None:
    pool = [therapist(i, active_courses=i % 4, focus_areas=["grief"][: i % 2]) for i in range(1, 9)]
    first = match(needs(), pool, NOW)
    assert first == match(needs(), list(reversed(pool)), NOW)


# --------------------------------------------------------------------------- reasons, relaxed


def test_reasons_carry_codes_and_values() -> None:
    n = needs(languages=["ar", "sv"], problem_areas=["grief", "stress"])
    c = therapist(
        languages=["ar", "sv"],
        focus_areas=["grief", "stress"],
        active_courses=1,
        rating_average=4.9,
        rating_count=50,
    )
    m = matched(match(n, [c], NOW))
    assert m.reasons[0].code == "speaks_language" and m.reasons[0].value == "ar"
    assert [r.value for r in m.reasons if r.code == "works_with_area"] == ["grief", "stress"]
    got = codes(m)
    assert got["first_free_time"] == "2025-03-04T13:00:00+00:00"
    assert got["offers_mode"] == "video"
    assert got["well_rated"] == "4.9"
    assert "has_room" in got
    assert "in_your_city" not in got
    assert "licensed_for_severity" not in got
    assert "chosen_by_client" not in got
    assert m.relaxed == []


def test_busy_or_modestly_rated_therapist_gets_no_such_reason() -> None:
    m = matched(match(needs(), [therapist(active_courses=8, rating_average=4.0)], NOW))
    assert "has_room" not in codes(m)
    assert "well_rated" not in codes(m)


def test_relaxed_language_rank() -> None:
    m = matched(match(needs(languages=["ar", "sv"]), [therapist(languages=["sv"])], NOW))
    assert m.relaxed == ["language_rank"]
    assert codes(m)["speaks_language"] == "sv"


def test_relaxed_time_windows_when_no_slot_inside() -> None:
    monday = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    m = matched(match(needs(), [therapist(free_slots=[monday])], NOW))
    assert m.relaxed == ["time_windows"]
    assert codes(m)["first_free_time"] == monday.isoformat()


def test_no_windows_means_any_time_suits() -> None:
    monday = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    m = matched(match(needs(time_windows=[]), [therapist(free_slots=[monday])], NOW))
    assert m.relaxed == []


def test_relaxed_problem_area_overlap() -> None:
    m = matched(match(needs(), [therapist(focus_areas=["anxiety"])], NOW))
    assert m.relaxed == ["problem_area_overlap"]
    assert "works_with_area" not in codes(m)


# --------------------------------------------------------------------------- alternatives


def test_at_most_three_alternatives_excluding_the_chosen() -> None:
    pool = [therapist(i, active_courses=i) for i in range(1, 7)]
    m = matched(match(needs(), pool, NOW))
    assert m.therapist_id == tid(1)
    assert len(m.alternatives) == MAX_ALTERNATIVES
    assert [a.therapist_id for a in m.alternatives] == [tid(2), tid(3), tid(4)]
    scores = [m.score, *(a.score for a in m.alternatives)]
    assert scores == sorted(scores, reverse=True)


def test_alternatives_only_from_those_who_pass() -> None:
    pool = [therapist(1), therapist(2, languages=["fi"]), therapist(3)]
    m = matched(match(needs(), pool, NOW))
    assert [a.therapist_id for a in m.alternatives] == [tid(3)]


# --------------------------------------------------------------------------- waitlist


def test_empty_pool_waits_with_no_candidate() -> None:
    assert match(needs(), [], NOW) == Waitlist(reasons=["no_candidate"])


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"accepting_new_clients": False}, "no_therapist_accepting"),
        ({"active_courses": 10}, "no_therapist_accepting"),
        ({"methods": ["KBT"]}, "no_qualified_therapist"),
        ({"age_groups": ["adolescents"]}, "no_qualified_therapist"),
        ({"languages": ["de"]}, "no_language_match"),
        ({"modes": ["in_person"]}, "no_mode_match"),
    ],
)
def test_waitlist_reason_names_the_failing_filter(
    changes: dict[str, Any], reason: WaitlistReason
) -> None:
    assert match(needs(), [therapist(**changes)], NOW) == Waitlist(reasons=[reason])


def test_waitlist_reasons_come_from_the_nearest_misses() -> None:
    pool = [
        therapist(1, languages=["de"]),  # fails only language
        therapist(2, modes=["in_person"]),  # fails only mode
        therapist(3, accepting_new_clients=False, methods=["KBT"], languages=["de"]),
    ]
    result = match(needs(), pool, NOW)
    assert result == Waitlist(reasons=["no_language_match", "no_mode_match"])


def test_waitlist_when_every_candidate_is_excluded() -> None:
    n = needs(excluded_therapist_ids=frozenset({tid(1)}))
    assert match(n, [therapist(1)], NOW) == Waitlist(reasons=["no_candidate"])


# --------------------------------------------------------------------------- direct choice


def test_direct_choice_is_honoured_over_a_better_score() -> None:
    better = therapist(1, active_courses=0, rating_average=5.0, rating_count=100)
    chosen = therapist(2, active_courses=9)
    m = matched(match(needs(direct_therapist_id=tid(2)), [better, chosen], NOW))
    assert m.therapist_id == tid(2)
    assert m.reasons[0].code == "chosen_by_client"
    assert [a.therapist_id for a in m.alternatives] == [tid(1)]
    assert m.choice_refused == [] and "direct_choice" not in m.relaxed


@pytest.mark.parametrize(
    ("changes", "need_changes", "problem"),
    [
        ({"languages": ["de"]}, {}, "language"),
        ({"active_courses": 10}, {}, "at_capacity"),
        (
            {"profession": "certified_staff", "licensed": False},
            {"requires_licensed": True},
            "licence",
        ),
        ({"age_groups": ["adolescents"]}, {}, "age_group"),
    ],
)
def test_direct_choice_refused_explains_and_offers_the_best_match(
    changes: dict[str, Any], need_changes: dict[str, Any], problem: str
) -> None:
    n = needs(direct_therapist_id=tid(9), **need_changes)
    pool = [therapist(9, **changes), therapist(1), therapist(2, active_courses=8)]
    m = matched(match(n, pool, NOW))
    assert m.therapist_id == tid(1)
    assert m.choice_refused == [problem]
    assert "direct_choice" in m.relaxed
    assert "chosen_by_client" not in codes(m)
    assert [a.therapist_id for a in m.alternatives] == [tid(2)]


def test_direct_choice_of_an_unknown_therapist() -> None:
    m = matched(match(needs(direct_therapist_id=tid(77)), [therapist(1)], NOW))
    assert m.choice_refused == ["not_listed"]


def test_direct_choice_refused_and_nobody_else_waits() -> None:
    n = needs(direct_therapist_id=tid(9))
    result = match(n, [therapist(9, languages=["de"])], NOW)
    assert result == Waitlist(reasons=["chosen_therapist_unavailable", "no_language_match"])
    assert match(n, [], NOW) == Waitlist(reasons=["chosen_therapist_unavailable"])


# --------------------------------------------------------------------------- switching


def test_switching_never_chooses_nor_offers_the_current_therapist() -> None:
    current = therapist(1, active_courses=0, rating_average=5.0, rating_count=100)
    pool = [current, therapist(2), therapist(3)]
    n = needs(excluded_therapist_ids=frozenset({tid(1)}))
    m = matched(match(n, pool, NOW))
    assert m.therapist_id == tid(2)
    assert tid(1) not in {a.therapist_id for a in m.alternatives}


def test_switching_refuses_a_direct_choice_of_the_current_therapist() -> None:
    n = needs(excluded_therapist_ids=frozenset({tid(1)}), direct_therapist_id=tid(1))
    m = matched(match(n, [therapist(1), therapist(2)], NOW))
    assert m.therapist_id == tid(2)
    assert m.choice_refused == ["excluded"]


# --------------------------------------------------------------------------- from an intake


def test_needs_from_a_screened_intake() -> None:
    intake = Intake.model_validate(
        {
            "age": 40,
            "languages": ["fa", "sv"],
            "preferred_mode": "either",
            "city": "Göteborg",
            "problem_areas": ["anxiety"],
            "phq9": [3, 3, 3, 3, 3, 3, 2, 0, 0],
            "time_windows": [{"weekday": 1, "start": "13:00", "end": "17:00"}],
            "consent_to_treatment": True,
            "consent_to_health_data": True,
        }
    )
    n = IntakeNeeds.from_intake(tid(5), intake, screen_intake(intake), [tid(1)])
    assert n.method == "KBT"
    assert n.requires_licensed is True
    assert n.languages == ("fa", "sv")
    assert n.excluded_therapist_ids == frozenset({tid(1)})
    assert n.time_windows == tuple(intake.time_windows)


# --------------------------------------------------------------------------- properties

candidates = st.builds(
    TherapistCandidate,
    therapist_id=st.integers(1, 12).map(tid),
    profession=st.sampled_from(["psychologist", "psychotherapist", "certified_staff"]),
    licensed=st.booleans(),
    methods=st.lists(st.sampled_from(["IPT", "IPT-A", "KBT"]), max_size=3, unique=True),
    focus_areas=st.lists(st.sampled_from(["grief", "stress", "anxiety"]), unique=True),
    languages=st.lists(st.sampled_from(["sv", "en", "ar"]), min_size=1, unique=True),
    modes=st.lists(st.sampled_from(["video", "in_person"]), min_size=1, unique=True),
    city=st.sampled_from([None, "Malmö", "Lund"]),
    age_groups=st.lists(st.sampled_from(["adults", "adolescents"]), min_size=1, unique=True),
    capacity=st.integers(1, 5),
    active_courses=st.integers(0, 6),
    accepting_new_clients=st.booleans(),
    rating_average=st.one_of(st.none(), st.floats(1, 5)),
    rating_count=st.integers(0, 50),
    free_slots=st.lists(
        st.integers(-48, 24 * 60).map(lambda h: NOW + timedelta(hours=h)), max_size=4
    ),
)
needs_strategy = st.builds(
    IntakeNeeds,
    intake_id=st.just(tid(1000)),
    method=st.sampled_from(["IPT", "IPT-A", "KBT"]),
    age_group=st.sampled_from(["adults", "adolescents"]),
    problem_areas=st.lists(st.sampled_from(["grief", "stress"]), min_size=1, unique=True),
    languages=st.lists(st.sampled_from(["sv", "en", "ar"]), min_size=1, unique=True),
    preferred_mode=st.sampled_from(["video", "in_person", "either"]),
    city=st.sampled_from([None, "Malmö", "malmö", "Lund"]),
    time_windows=st.sampled_from([(), tuple(TUESDAY_AFTERNOON)]),
    requires_licensed=st.booleans(),
    direct_therapist_id=st.one_of(st.none(), st.integers(1, 12).map(tid)),
    excluded_therapist_ids=st.frozensets(st.integers(1, 12).map(tid), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(needs_strategy, st.lists(candidates, max_size=8, unique_by=lambda c: c.therapist_id))
def test_never_offers_anyone_who_fails_a_hard_filter_or_is_excluded(
    n: IntakeNeeds, pool: list[TherapistCandidate]
) -> None:
    result = match(n, pool, NOW)
    by_id = {c.therapist_id: c for c in pool}
    eligible = [c for c in pool if passes_hard_filters(c, n)]
    if isinstance(result, Waitlist):
        assert eligible == []
        assert result.reasons
        return
    offered = [result.therapist_id, *(a.therapist_id for a in result.alternatives)]
    assert len(offered) == len(set(offered)) <= 1 + MAX_ALTERNATIVES
    for t in offered:
        assert t not in n.excluded_therapist_ids
        assert failed_filters(by_id[t], n) == []
    assert 0 <= result.score <= 100
    assert all(a.score <= result.score for a in result.alternatives) or (
        n.direct_therapist_id == result.therapist_id
    )
    if n.requires_licensed:
        assert by_id[result.therapist_id].licensed
    # deterministic: same input in another order, same answer
    assert match(n, list(reversed(pool)), NOW) == result


@given(
    st.lists(
        st.integers(0, 8 * 7 * 48).map(lambda n: NOW + timedelta(minutes=30 * n)),
        max_size=30,
    )
)
@settings(max_examples=50)
def test_the_window_check_remembers_without_changing_answers(slots: list[datetime]) -> None:
    windows = WindowCheck(TUESDAY_AFTERNOON)
    for slot in slots + slots:  # the second time from memory
        assert windows[slot] == in_windows(slot, TUESDAY_AFTERNOON)
    assert windows[IN_WINDOW] is True
