"""The matcher: hard filters, a 0-100 score, reasons, relaxed preferences (docs/domain.md).

Pure: it reads a snapshot of the therapist read model and a clock value; the
caller loads the one and supplies the other. High-risk intakes must not reach it
before a clinician's triage says "resume matching".

Outcomes:
- `Match`: the chosen therapist, its score, reasons, relaxed preferences and up
  to three alternatives.
- A direct choice that fails is not a separate type: the result is the normal
  best `Match` with `relaxed` holding "direct_choice" and `choice_refused`
  naming why the chosen therapist could not be offered (which filter failed),
  so the service can still emit `TherapistMatched` and explain the refusal.
- `Waitlist`: nobody passes the hard filters; `reasons` names the filters
  that stopped the nearest candidates ("chosen_therapist_unavailable" first
  when the client had chosen somebody).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from contracts.events import MatchAlternative, MatchReason, RelaxedPreference, WaitlistReason
from contracts.methods import LICENSED_PROFESSIONS
from contracts.vocabulary import AgeGroup, MeetingMode, MethodCode, PreferredMode, Profession
from matching.domain.intake import Intake, WeeklyWindow
from matching.domain.screening import Screening

# Preferred windows are the client's local time; clients are in Sweden for now.
CLIENT_TIME_ZONE = ZoneInfo("Europe/Stockholm")

# Score weights; they sum to MAX_SCORE so each part is "points out of 100".
WEIGHT_PROBLEM_AREAS = 30.0
WEIGHT_LANGUAGE = 20.0
WEIGHT_FIRST_SLOT = 25.0
WEIGHT_RATING = 15.0
WEIGHT_LOAD = 10.0
MAX_SCORE = 100.0
SCORE_DECIMALS = 2  # ties at this precision fall to the therapist id

# A slot's worth falls linearly to zero at the booking horizon (8 weeks).
SLOT_HORIZON = timedelta(weeks=8)
# A free slot outside every preferred window is still worth something, but little.
OUTSIDE_WINDOW_SHARE = 0.2

# Bayesian rating: every therapist starts with this many imagined reviews of this mean,
# so one 5-star review does not beat many 4.8s.
RATING_PRIOR_MEAN = 4.0
RATING_PRIOR_COUNT = 5
RATING_MIN, RATING_MAX = 1.0, 5.0
WELL_RATED_FROM = 4.5  # Bayesian rating at or above this earns the "well_rated" reason
WELL_RATED_MIN_REVIEWS = 3

HAS_ROOM_MAX_LOAD = 0.5  # at most half of capacity in use earns the "has_room" reason

MAX_ALTERNATIVES = 3

# Hard filters in the order they are checked and reported.
HardFilter = Literal[
    "not_accepting", "at_capacity", "method", "licence", "age_group", "language", "mode"
]
HARD_FILTERS: tuple[HardFilter, ...] = (
    "not_accepting",
    "at_capacity",
    "method",
    "licence",
    "age_group",
    "language",
    "mode",
)
# Why a directly chosen therapist could not be offered: a failed filter, or not offerable at all.
ChoiceProblem = Literal[
    "not_accepting",
    "at_capacity",
    "method",
    "licence",
    "age_group",
    "language",
    "mode",
    "not_listed",  # unknown, withdrawn or not in the read model
    "excluded",  # the therapist the client is switching away from
]
WAITLIST_REASON_OF: dict[HardFilter, WaitlistReason] = {
    "not_accepting": "no_therapist_accepting",
    "at_capacity": "no_therapist_accepting",
    "method": "no_qualified_therapist",
    "licence": "no_qualified_therapist",
    "age_group": "no_qualified_therapist",
    "language": "no_language_match",
    "mode": "no_mode_match",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class TherapistCandidate:
    """One row of matching's therapist read model (profile + availability events)."""

    therapist_id: uuid.UUID
    profession: Profession
    licensed: bool
    methods: Sequence[MethodCode]  # methods offered (and, for non-licensed staff, certified)
    focus_areas: Sequence[str]
    languages: Sequence[str]
    modes: Sequence[MeetingMode]
    city: str | None
    age_groups: Sequence[AgeGroup]
    capacity: int
    active_courses: int
    accepting_new_clients: bool
    rating_average: float | None = None
    rating_count: int = 0
    free_slots: Sequence[datetime] = ()  # aware, UTC
    time_zone: str = "Europe/Stockholm"


@dataclass(frozen=True, kw_only=True)
class IntakeNeeds:
    intake_id: uuid.UUID
    method: MethodCode
    age_group: AgeGroup
    problem_areas: Sequence[str]
    languages: Sequence[str]  # most preferred first
    preferred_mode: PreferredMode
    city: str | None
    time_windows: Sequence[WeeklyWindow] = ()  # empty: any time suits
    requires_licensed: bool = False
    direct_therapist_id: uuid.UUID | None = None
    excluded_therapist_ids: frozenset[uuid.UUID] = frozenset()

    @classmethod
    def from_intake(
        cls,
        intake_id: uuid.UUID,
        intake: Intake,
        screening: Screening,
        excluded_therapist_ids: Iterable[uuid.UUID] = (),
    ) -> IntakeNeeds:
        return cls(
            intake_id=intake_id,
            method=screening.method,
            age_group=screening.age_group,
            problem_areas=tuple(intake.problem_areas),
            languages=tuple(intake.languages),
            preferred_mode=intake.preferred_mode,
            city=intake.city,
            time_windows=tuple(intake.time_windows),
            requires_licensed=screening.requires_licensed,
            direct_therapist_id=intake.direct_therapist_id,
            excluded_therapist_ids=frozenset(excluded_therapist_ids),
        )


@dataclass(frozen=True, kw_only=True)
class Match:
    therapist_id: uuid.UUID
    score: float
    mode: MeetingMode
    reasons: list[MatchReason]
    relaxed: list[RelaxedPreference]
    alternatives: list[MatchAlternative]
    # Set only when the client chose a therapist who could not be offered.
    choice_refused: list[ChoiceProblem] = field(default_factory=list)


@dataclass(frozen=True)
class Waitlist:
    reasons: list[WaitlistReason]


# --------------------------------------------------------------------------- hard filters


def _same_city(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def is_licensed(candidate: TherapistCandidate) -> bool:
    return candidate.licensed and candidate.profession in LICENSED_PROFESSIONS


def meeting_mode(candidate: TherapistCandidate, needs: IntakeNeeds) -> MeetingMode | None:
    """The mode the pair would meet in, or None when no mode fits.

    'either' prefers in person in the client's city (they named one to be met there),
    else video.
    """
    in_person = "in_person" in candidate.modes and _same_city(candidate.city, needs.city)
    video = "video" in candidate.modes
    if needs.preferred_mode == "in_person":
        return "in_person" if in_person else None
    if needs.preferred_mode == "video":
        return "video" if video else None
    if in_person:
        return "in_person"
    return "video" if video else None


def failed_filters(candidate: TherapistCandidate, needs: IntakeNeeds) -> list[HardFilter]:
    """Every hard filter the candidate fails, in HARD_FILTERS order; empty means eligible."""
    failed: list[HardFilter] = []
    if not candidate.accepting_new_clients:
        failed.append("not_accepting")
    if candidate.active_courses >= candidate.capacity:
        failed.append("at_capacity")
    # Offering the method is required; for staff without a licence the listed method
    # is their certification, which is what qualifies them (Method.eligible_professions).
    if needs.method not in candidate.methods:
        failed.append("method")
    if needs.requires_licensed and not is_licensed(candidate):
        failed.append("licence")
    if needs.age_group not in candidate.age_groups:
        failed.append("age_group")
    if not set(needs.languages) & set(candidate.languages):
        failed.append("language")
    if meeting_mode(candidate, needs) is None:
        failed.append("mode")
    return failed


def passes_hard_filters(candidate: TherapistCandidate, needs: IntakeNeeds) -> bool:
    return candidate.therapist_id not in needs.excluded_therapist_ids and not failed_filters(
        candidate, needs
    )


# --------------------------------------------------------------------------- scoring


def bayesian_rating(average: float | None, count: int) -> float:
    if average is None or count <= 0:
        return RATING_PRIOR_MEAN
    return (RATING_PRIOR_MEAN * RATING_PRIOR_COUNT + average * count) / (RATING_PRIOR_COUNT + count)


@lru_cache(maxsize=65_536)
def _weekday_and_time(slot: datetime) -> tuple[int, time]:
    """A slot as the client's local weekday and wall-clock time. Cached: slots sit on a grid,
    so the same few thousand instants recur across therapists (10,000 per intake)."""
    local = slot.astimezone(CLIENT_TIME_ZONE)
    return local.weekday(), local.time()


def in_windows(slot: datetime, windows: Sequence[WeeklyWindow]) -> bool:
    if not windows:
        return True
    weekday, moment = _weekday_and_time(slot)
    return any(w.contains(weekday, moment) for w in windows)


class WindowCheck(dict[datetime, bool]):
    """`in_windows` once per distinct slot instant for one intake: therapists' slots sit on
    a shared grid, so across thousands of candidates the same instants recur."""

    def __init__(self, windows: Sequence[WeeklyWindow]) -> None:
        super().__init__()
        self.windows = windows

    def __missing__(self, slot: datetime) -> bool:
        self[slot] = inside = in_windows(slot, self.windows)
        return inside


def first_slot(
    candidate: TherapistCandidate,
    needs: IntakeNeeds,
    now: datetime,
    windows: WindowCheck | None = None,
) -> tuple[datetime | None, bool]:
    """The earliest future slot inside the windows (True), else the earliest at all (False)."""
    windows = windows if windows is not None else WindowCheck(needs.time_windows)
    future = sorted(s for s in candidate.free_slots if s >= now)
    inside = next((s for s in future if windows[s]), None)
    if inside is not None:
        return inside, True
    return (future[0] if future else None), False


def _language_rank(candidate: TherapistCandidate, needs: IntakeNeeds) -> int | None:
    return next((i for i, lang in enumerate(needs.languages) if lang in candidate.languages), None)


@dataclass(frozen=True)
class Assessed:
    candidate: TherapistCandidate
    score: float
    mode: MeetingMode
    language_rank: int
    overlap: list[str]
    slot: datetime | None
    slot_in_window: bool
    rating: float
    load: float


def assess(
    candidate: TherapistCandidate, needs: IntakeNeeds, now: datetime, windows: WindowCheck
) -> Assessed:
    mode = meeting_mode(candidate, needs)
    rank = _language_rank(candidate, needs)
    assert mode is not None and rank is not None, "assess only candidates that pass filters"
    overlap = [a for a in needs.problem_areas if a in candidate.focus_areas]
    slot, slot_in_window = first_slot(candidate, needs, now, windows)
    rating = bayesian_rating(candidate.rating_average, candidate.rating_count)
    load = candidate.active_courses / candidate.capacity

    area_part = len(overlap) / len(needs.problem_areas) if needs.problem_areas else 1.0
    language_part = 1.0 / (1 + rank)  # 1, 1/2, 1/3 ...: first choice best
    slot_part = 0.0
    if slot is not None:
        soon = max(0.0, 1.0 - (slot - now) / SLOT_HORIZON)
        slot_part = soon if slot_in_window else soon * OUTSIDE_WINDOW_SHARE
    rating_part = (rating - RATING_MIN) / (RATING_MAX - RATING_MIN)
    load_part = 1.0 - load  # less loaded scores higher: spreads new clients fairly

    score = (
        WEIGHT_PROBLEM_AREAS * area_part
        + WEIGHT_LANGUAGE * language_part
        + WEIGHT_FIRST_SLOT * slot_part
        + WEIGHT_RATING * rating_part
        + WEIGHT_LOAD * load_part
    )
    score = round(min(MAX_SCORE, max(0.0, score)), SCORE_DECIMALS)
    return Assessed(candidate, score, mode, rank, overlap, slot, slot_in_window, rating, load)


def rank_key(a: Assessed) -> tuple[float, str]:
    return (-a.score, str(a.candidate.therapist_id))


def _reasons(a: Assessed, needs: IntakeNeeds, chosen_by_client: bool) -> list[MatchReason]:
    c = a.candidate
    reasons: list[MatchReason] = []
    if chosen_by_client:
        reasons.append(MatchReason(code="chosen_by_client"))
    if needs.requires_licensed:
        reasons.append(MatchReason(code="licensed_for_severity"))
    reasons.append(MatchReason(code="speaks_language", value=needs.languages[a.language_rank]))
    reasons.extend(MatchReason(code="works_with_area", value=area) for area in a.overlap)
    reasons.append(MatchReason(code="offers_mode", value=a.mode))
    if a.mode == "in_person":
        reasons.append(MatchReason(code="in_your_city"))
    if a.slot is not None:
        reasons.append(
            MatchReason(code="first_free_time", value=a.slot.astimezone(UTC).isoformat())
        )
    well_rated = c.rating_count >= WELL_RATED_MIN_REVIEWS and a.rating >= WELL_RATED_FROM
    if well_rated and c.rating_average is not None:
        reasons.append(MatchReason(code="well_rated", value=f"{c.rating_average:.1f}"))
    if a.load <= HAS_ROOM_MAX_LOAD:
        reasons.append(MatchReason(code="has_room"))
    return reasons


def _relaxed(a: Assessed, needs: IntakeNeeds) -> list[RelaxedPreference]:
    relaxed: list[RelaxedPreference] = []
    if a.language_rank > 0:
        relaxed.append("language_rank")
    if needs.time_windows and not a.slot_in_window:
        relaxed.append("time_windows")
    if len(a.overlap) < len(needs.problem_areas):
        relaxed.append("problem_area_overlap")
    # 'mode' is a hard filter, so never relaxed; 'either' getting one of them is not relaxing.
    return relaxed


def to_match(
    chosen: Assessed,
    others: Sequence[Assessed],
    needs: IntakeNeeds,
    *,
    chosen_by_client: bool = False,
    choice_refused: Sequence[ChoiceProblem] = (),
) -> Match:
    relaxed = _relaxed(chosen, needs)
    if choice_refused:
        relaxed.append("direct_choice")
    return Match(
        therapist_id=chosen.candidate.therapist_id,
        score=chosen.score,
        mode=chosen.mode,
        reasons=_reasons(chosen, needs, chosen_by_client),
        relaxed=relaxed,
        alternatives=[
            MatchAlternative(therapist_id=o.candidate.therapist_id, score=o.score)
            for o in others
            if o.candidate.therapist_id != chosen.candidate.therapist_id
        ][:MAX_ALTERNATIVES],
        choice_refused=list(choice_refused),
    )


def waitlist_reasons(
    candidates: Iterable[TherapistCandidate], needs: IntakeNeeds
) -> list[WaitlistReason]:
    """The filters that stopped the nearest misses: the candidates failing the fewest filters.

    That tells the client what would have to change (or open up) for a match.
    """
    failures = [
        failed_filters(c, needs)
        for c in candidates
        if c.therapist_id not in needs.excluded_therapist_ids
    ]
    failures = [f for f in failures if f]
    if not failures:
        return ["no_candidate"]
    fewest = min(len(f) for f in failures)
    telling = {flt for f in failures if len(f) == fewest for flt in f}
    reasons: list[WaitlistReason] = []
    for flt in HARD_FILTERS:
        reason = WAITLIST_REASON_OF[flt]
        if flt in telling and reason not in reasons:
            reasons.append(reason)
    return reasons


def choice_problems(chosen: TherapistCandidate | None, needs: IntakeNeeds) -> list[ChoiceProblem]:
    """Why the therapist the client chose (None: not in the read model) cannot be offered."""
    if needs.direct_therapist_id in needs.excluded_therapist_ids:
        return ["excluded"]
    if chosen is None:
        return ["not_listed"]
    return list(failed_filters(chosen, needs))


def conclude(
    needs: IntakeNeeds,
    ranked: Sequence[Assessed],
    *,
    problems: Sequence[ChoiceProblem],
    chosen: Assessed | None,
    waitlist: Callable[[], list[WaitlistReason]],
) -> Match | Waitlist:
    """The outcome from the eligible candidates best first (at least the best
    1 + MAX_ALTERNATIVES of them), the direct choice's problems, the directly chosen
    candidate when it may be offered, and the waitlist reasons (asked only when needed).
    Shared by `match()` and the candidate index, so both conclude alike."""
    if chosen is not None:
        return to_match(chosen, ranked, needs, chosen_by_client=True)
    if not ranked:
        reasons = waitlist()
        if problems:
            others = [r for r in reasons if r != "no_candidate"]
            reasons = ["chosen_therapist_unavailable", *others]
        return Waitlist(reasons=reasons)
    return to_match(ranked[0], ranked[1:], needs, choice_refused=problems)


def match(
    needs: IntakeNeeds, candidates: Iterable[TherapistCandidate], now: datetime
) -> Match | Waitlist:
    """Pick the best therapist for `needs` among `candidates` at time `now` (aware).

    The reference: matching.domain.candidate_index answers the same, faster."""
    pool = list(candidates)
    windows = WindowCheck(needs.time_windows)
    eligible = sorted(
        (assess(c, needs, now, windows) for c in pool if passes_hard_filters(c, needs)),
        key=rank_key,
    )
    problems: list[ChoiceProblem] = []
    chosen: Assessed | None = None
    chosen_id = needs.direct_therapist_id
    if chosen_id is not None:
        problems = choice_problems(
            next((c for c in pool if c.therapist_id == chosen_id), None), needs
        )
        if not problems:
            chosen = next(a for a in eligible if a.candidate.therapist_id == chosen_id)
    return conclude(
        needs,
        eligible,
        problems=problems,
        chosen=chosen,
        waitlist=lambda: waitlist_reasons(pool, needs),
    )
