"""The candidate index answers exactly what the reference `match()` answers: the same
therapist, score, reasons, relaxed preferences, alternatives, refused choice and
waitlist reasons, over generated catalogs and intakes — also after therapists change and
leave the index."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching.domain.candidate_index import CandidateIndex
from matching.domain.intake import WeeklyWindow
from matching.domain.matcher import IntakeNeeds, Match, TherapistCandidate, Waitlist, match

# Monday 24 March 2025, 09:00 UTC: the Sunday after has the switch to summer time.
NOW = datetime(2025, 3, 24, 9, 0, tzinfo=UTC)
# Few values per field, so catalogs hold ties and near misses on purpose.
LANGUAGES = ("sv", "en", "ar", "fa")
AREAS = ("grief", "depression", "anxiety", "role_transition")
CITIES = ("Malmö", " malmö ", "Lund", None)
IDS = [uuid.UUID(int=n) for n in range(1, 61)]

slots = st.lists(
    # A half-hour grid from a week ago to ten weeks ahead: past, inside and beyond the horizon.
    st.integers(-7 * 48, 70 * 48).map(lambda k: NOW + timedelta(minutes=30 * k)),
    max_size=6,
)

candidates = st.builds(
    TherapistCandidate,
    therapist_id=st.sampled_from(IDS),
    profession=st.sampled_from(("psychologist", "psychotherapist", "certified_staff")),
    licensed=st.booleans(),
    methods=st.lists(st.sampled_from(("IPT", "KBT", "IPT-A")), min_size=1, max_size=3),
    focus_areas=st.lists(st.sampled_from(AREAS), max_size=3, unique=True),
    languages=st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=3, unique=True),
    modes=st.lists(st.sampled_from(("video", "in_person")), min_size=1, max_size=2, unique=True),
    city=st.sampled_from(CITIES),
    age_groups=st.lists(st.sampled_from(("adults", "adolescents")), min_size=1, unique=True),
    capacity=st.integers(1, 4),
    active_courses=st.integers(0, 4),
    accepting_new_clients=st.booleans() | st.just(True),
    rating_average=st.none() | st.sampled_from((3.0, 4.2, 4.5, 4.9, 5.0)),
    rating_count=st.integers(0, 12),
    free_slots=slots,
)
catalogs = st.lists(candidates, max_size=30, unique_by=lambda c: c.therapist_id)
# Catalogs where most therapists pass the filters of `crowd_needs`, so the vector score
# (not only the exact re-scoring) decides who is among the best.
crowd = st.builds(
    dataclasses.replace,
    candidates,
    methods=st.just(("IPT", "KBT")),
    age_groups=st.just(("adults",)),
    modes=st.sampled_from((("video",), ("video", "in_person"))),
    accepting_new_clients=st.just(True),
    capacity=st.just(5),
    active_courses=st.integers(0, 4),
    languages=st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=3, unique=True).map(
        lambda spoken: spoken if "sv" in spoken else [*spoken, "sv"]
    ),
)
crowded = st.lists(crowd, min_size=5, max_size=40, unique_by=lambda c: c.therapist_id)

windows = st.builds(
    lambda day, start, hours: WeeklyWindow(weekday=day, start=time(start), end=time(start + hours)),
    st.integers(0, 6),
    st.integers(6, 18),
    st.integers(1, 5),
)

needs = st.builds(
    IntakeNeeds,
    intake_id=st.just(uuid.UUID(int=999)),
    method=st.sampled_from(("IPT", "KBT", "IPT-A")),
    age_group=st.sampled_from(("adults", "adolescents")),
    problem_areas=st.lists(st.sampled_from(AREAS), min_size=1, max_size=2, unique=True),
    languages=st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=3, unique=True),
    preferred_mode=st.sampled_from(("video", "in_person", "either")),
    city=st.sampled_from(CITIES),
    time_windows=st.lists(windows, max_size=2),
    requires_licensed=st.booleans(),
    direct_therapist_id=st.none() | st.sampled_from(IDS),
    excluded_therapist_ids=st.frozensets(st.sampled_from(IDS), max_size=3),
)


crowd_needs = st.builds(
    dataclasses.replace,
    needs,
    method=st.just("IPT"),
    age_group=st.just("adults"),
    requires_licensed=st.just(False),
    preferred_mode=st.sampled_from(("video", "either")),
    excluded_therapist_ids=st.just(frozenset()),
    languages=st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=3, unique=True).map(
        lambda wanted: wanted if "sv" in wanted else [*wanted, "sv"]
    ),
)


def same(index_result: Match | Waitlist, reference: Match | Waitlist) -> None:
    assert index_result == reference


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs, needs)
def test_the_index_decides_as_match_does(catalog: list[TherapistCandidate], n: IntakeNeeds) -> None:
    expected = match(n, catalog, NOW)
    got = CandidateIndex(catalog).decide(n, NOW)
    same(got, expected)
    if isinstance(expected, Match):  # the property has teeth: alternatives are compared too
        assert isinstance(got, Match) and got.alternatives == expected.alternatives


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crowded, crowd_needs)
def test_the_index_ranks_a_crowd_of_fitting_therapists_as_match_does(
    catalog: list[TherapistCandidate], n: IntakeNeeds
) -> None:
    expected = match(n, catalog, NOW)
    assert isinstance(expected, Match)
    same(CandidateIndex(catalog).decide(n, NOW), expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs, st.lists(candidates, max_size=15), st.sets(st.sampled_from(IDS)), needs)
def test_the_index_stays_equal_to_match_as_therapists_change_and_leave(
    catalog: list[TherapistCandidate],
    changes: list[TherapistCandidate],
    withdrawn: set[uuid.UUID],
    n: IntakeNeeds,
) -> None:
    index = CandidateIndex(catalog)
    current = {c.therapist_id: c for c in catalog}
    for change in changes:
        index.put(change)
        current[change.therapist_id] = change
    for therapist_id in withdrawn:
        index.drop(therapist_id)
        current.pop(therapist_id, None)
    assert {c.therapist_id for c in index.candidates()} == current.keys()
    assert len(index) == len(current)
    same(index.decide(n, NOW), match(n, current.values(), NOW))


def a_therapist(**changes: Any) -> TherapistCandidate:
    """A licensed psychologist for IPT and grief, in Swedish, by video, for adults, with
    room: the one therapist (and its copies) of the tests below."""
    fields: dict[str, Any] = dict(
        therapist_id=IDS[0],
        profession="psychologist",
        licensed=True,
        methods=["IPT"],
        focus_areas=["grief"],
        languages=["sv"],
        modes=["video"],
        city=None,
        age_groups=["adults"],
        capacity=4,
        active_courses=0,
        accepting_new_clients=True,
    )
    fields.update(changes)
    return TherapistCandidate(**fields)


def needs_for_grief(**changes: Any) -> IntakeNeeds:
    """An adult's needs that `a_therapist()` fits: IPT for grief, in Swedish, by video."""
    fields: dict[str, Any] = dict(
        intake_id=uuid.UUID(int=999),
        method="IPT",
        age_group="adults",
        problem_areas=["grief"],
        languages=["sv"],
        preferred_mode="video",
        city=None,
    )
    fields.update(changes)
    return IntakeNeeds(**fields)


def test_many_tied_therapists_still_give_the_lowest_ids_as_match_does() -> None:
    base = a_therapist(active_courses=1, free_slots=[NOW + timedelta(days=1)])
    catalog = [dataclasses.replace(base, therapist_id=uuid.UUID(int=5000 - k)) for k in range(2000)]
    n = needs_for_grief()
    got = CandidateIndex(catalog).decide(n, NOW)
    assert got == match(n, catalog, NOW)
    assert isinstance(got, Match) and got.therapist_id == uuid.UUID(int=3001)
    assert [a.therapist_id for a in got.alternatives] == [
        uuid.UUID(int=k) for k in (3002, 3003, 3004)
    ]


def test_the_index_grows_past_its_first_rows_and_reuses_dropped_rows() -> None:
    base = a_therapist()
    index = CandidateIndex()
    catalog = [
        dataclasses.replace(
            base,
            therapist_id=uuid.uuid4(),
            active_courses=k % 4,
            free_slots=[NOW + timedelta(hours=k)],
        )
        for k in range(3000)
    ]
    for c in catalog:
        index.put(c)
    for c in catalog[:1500]:
        index.drop(c.therapist_id)
    newcomers = [dataclasses.replace(base, therapist_id=uuid.uuid4()) for _ in range(10)]
    for c in newcomers:
        index.put(c)
    pool = catalog[1500:] + newcomers
    n = needs_for_grief()
    assert len(index) == len(pool)
    assert index.decide(n, NOW) == match(n, pool, NOW)


def test_a_value_nobody_has_any_longer_takes_no_column() -> None:
    """A therapist who edits their city a thousand times (each a new one) leaves no column
    behind for the cities nobody has now: each was a column as long as the index, kept and
    copied at every growth (hundreds of MB at 10,000 therapists and 20,000 edits)."""
    base = a_therapist(
        modes=["video", "in_person"], city="Umeå", free_slots=[NOW + timedelta(days=1)]
    )
    others = [dataclasses.replace(base, therapist_id=uuid.UUID(int=7000 + k)) for k in range(5)]
    index = CandidateIndex([base, *others])
    columns = len(index._tag_columns)
    for n in range(1000):
        index.put(dataclasses.replace(base, city=f"Ort {n}"))
    index.put(dataclasses.replace(base, city="Lund"))
    assert len(index._tag_columns) <= columns + 1
    index.drop(base.therapist_id)
    assert len(index._tag_columns) == columns  # Lund was its alone
    needs = needs_for_grief(preferred_mode="in_person", city="Umeå")
    assert index.decide(needs, NOW) == match(needs, others, NOW)
