"""The candidate index: `match()` for thousands of therapists in a few milliseconds.

Pure (no I/O). The therapist read model held as numpy columns, one row per offered
therapist: the hard filters and the score run as vector operations over every row, then
the few candidates that can still be among the best are assessed again exactly by the
matcher itself (`assess`, `rank_key`, `conclude`), so weights, reasons, relaxed
preferences and tie-breaks are the matcher's own. The vector score differs from the exact
one only by float rounding and the matcher's rounding to SCORE_DECIMALS; everything within
that margin of the fourth best is re-scored, so the outcome equals `match()` on the same
therapists (tests/unit/test_candidate_index.py proves it over generated catalogs).

The caller keeps it current with `put` (a therapist added or changed) and `drop`
(withdrawn); free slots are kept as integers, not datetimes, to keep the index small.
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from contracts.events import WaitlistReason
from contracts.vocabulary import Profession
from matching.domain.matcher import (
    HARD_FILTERS,
    MAX_ALTERNATIVES,
    MAX_SCORE,
    OUTSIDE_WINDOW_SHARE,
    RATING_MAX,
    RATING_MIN,
    SCORE_DECIMALS,
    SLOT_HORIZON,
    WAITLIST_REASON_OF,
    WEIGHT_FIRST_SLOT,
    WEIGHT_LANGUAGE,
    WEIGHT_LOAD,
    WEIGHT_PROBLEM_AREAS,
    WEIGHT_RATING,
    Assessed,
    ChoiceProblem,
    IntakeNeeds,
    Match,
    TherapistCandidate,
    Waitlist,
    WindowCheck,
    _weekday_and_time,
    assess,
    bayesian_rating,
    choice_problems,
    conclude,
    is_licensed,
    rank_key,
)

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = timedelta(microseconds=1)
NO_SLOT = np.iinfo(np.int64).max
# Scores are rounded to SCORE_DECIMALS before ranking: a vector score this close to the
# fourth best may still rank above it once rounded (half a step each way, plus float noise).
RESCORE_MARGIN = 10.0 ** (-SCORE_DECIMALS) + 1e-6
FIRST_ROWS = 1024
FIRST_SLOTS = 32 * FIRST_ROWS


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROS


def _micros_of_day(moment: time) -> int:
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000 + (
        moment.microsecond
    )


def _city_key(city: str | None) -> str | None:
    return None if city is None else city.strip().casefold()


def _tags(c: TherapistCandidate) -> set[tuple[str, str]]:
    """The set-valued fields as (field, value) tags, one boolean column each."""
    tags: set[tuple[str, str]] = {("method", m) for m in c.methods}
    tags |= {("age", a) for a in c.age_groups}
    tags |= {("language", lang) for lang in c.languages}
    tags |= {("area", a) for a in c.focus_areas}
    city = _city_key(c.city)
    if city is not None:
        tags.add(("city", city))
    return tags


DAY = 24 * 60 * 60 * 1_000_000  # microseconds


def _slot_instants(ordered: Sequence[datetime]) -> Ints:
    """One therapist's free slots (in order) as instants."""
    return np.fromiter((_micros(s) for s in ordered), np.int64, len(ordered))


def _slot_weeks(ordered: Sequence[datetime]) -> Ints:
    """Each slot as the client's local time of the week (weekday and wall-clock time, in
    microseconds from Monday 00:00): a time-zone conversion per slot, so only for slots
    that changed (a decision puts its therapist back with one more place taken, and the
    same ~30 slots)."""
    local = [_weekday_and_time(s) for s in ordered]
    return np.fromiter((w * DAY + _micros_of_day(t) for w, t in local), np.int64, len(ordered))


def _shared_tuple(values: Iterable[str], shared: dict[tuple[str, ...], tuple[str, ...]]) -> Any:
    """The tuple, as one object shared by every therapist holding the same values (names
    read from the database arrive as new strings each row: thousands of copies of 'sv')."""
    key = tuple(sys.intern(v) for v in values)
    return shared.setdefault(key, key)


class CandidateIndex:
    """Offered therapists as columns; `decide` answers what `match()` would."""

    def __init__(self, candidates: Iterable[TherapistCandidate] = ()) -> None:
        self._rows = 0  # rows in use (live or free)
        self._size = FIRST_ROWS
        self._row_of: dict[uuid.UUID, int] = {}
        self._free: list[int] = []
        # Per row: the candidate without its slots, or None (free).
        self._held: list[TherapistCandidate | None] = []
        self._shared: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Every row's slots, end to end in two columns (no objects per row): a row's run
        # starts at slot_start and is slot_count long; a changed row's new run is appended
        # and the old one left as garbage until `_compact`.
        self._slot_at = np.zeros(FIRST_SLOTS, np.int64)
        self._slot_week = np.zeros(FIRST_SLOTS, np.int64)
        self._slots_used = 0
        self._slots_garbage = 0
        self.slot_start = np.zeros(self._size, np.int64)
        self.slot_count = np.zeros(self._size, np.int64)
        self.live = np.zeros(self._size, np.bool_)
        self.accepting = np.zeros(self._size, np.bool_)
        self.licensed = np.zeros(self._size, np.bool_)
        self.video = np.zeros(self._size, np.bool_)
        self.in_person = np.zeros(self._size, np.bool_)
        self.capacity = np.zeros(self._size, np.int64)
        self.active = np.zeros(self._size, np.int64)
        self.rating_part = np.zeros(self._size, np.float64)
        self.first_slot = np.full(self._size, NO_SLOT, np.int64)  # each row's earliest
        self._tag_columns: dict[tuple[str, str], Bools] = {}
        # How many rows have each tag: a column nobody has goes (a city edited away would
        # otherwise keep a column as long as the index, copied at every growth).
        self._tag_rows: dict[tuple[str, str], int] = {}
        for candidate in candidates:
            self.put(candidate)

    def __len__(self) -> int:
        return len(self._row_of)

    # ------------------------------------------------------------------ keeping it current

    def put(self, candidate: TherapistCandidate) -> None:
        """Add a therapist, or replace what the index holds about it."""
        row = self._row_of.get(candidate.therapist_id)
        if row is None:
            row = self._new_row()
            self._row_of[candidate.therapist_id] = row
            old_tags: set[tuple[str, str]] = set()
        else:
            previous = self._held[row]
            assert previous is not None
            old_tags = _tags(previous)
        new_tags = _tags(candidate)
        for tag in old_tags - new_tags:
            self._untag(tag, row)
        for tag in new_tags - old_tags:
            self._column(tag)[row] = True
            self._tag_rows[tag] = self._tag_rows.get(tag, 0) + 1
        self._held[row] = dataclasses.replace(
            candidate,
            profession=cast(Profession, sys.intern(candidate.profession)),
            methods=_shared_tuple(candidate.methods, self._shared),
            focus_areas=_shared_tuple(candidate.focus_areas, self._shared),
            languages=_shared_tuple(candidate.languages, self._shared),
            modes=_shared_tuple(candidate.modes, self._shared),
            city=None if candidate.city is None else sys.intern(candidate.city),
            age_groups=_shared_tuple(candidate.age_groups, self._shared),
            free_slots=(),
            time_zone=sys.intern(candidate.time_zone),
        )
        ordered = sorted(candidate.free_slots)
        at = _slot_instants(ordered)
        if not np.array_equal(at, self._slot_run(row)):
            self._put_slots(row, at, _slot_weeks(ordered))
        self.first_slot[row] = at[0] if len(at) else NO_SLOT
        self.live[row] = True
        self.accepting[row] = candidate.accepting_new_clients
        self.licensed[row] = is_licensed(candidate)
        self.video[row] = "video" in candidate.modes
        self.in_person[row] = "in_person" in candidate.modes
        self.capacity[row] = candidate.capacity
        self.active[row] = candidate.active_courses
        rating = bayesian_rating(candidate.rating_average, candidate.rating_count)
        self.rating_part[row] = (rating - RATING_MIN) / (RATING_MAX - RATING_MIN)

    def drop(self, therapist_id: uuid.UUID) -> None:
        """The therapist is no longer offered (withdrawn, or gone from the read model)."""
        row = self._row_of.pop(therapist_id, None)
        if row is None:
            return
        held = self._held[row]
        assert held is not None
        for tag in _tags(held):
            self._untag(tag, row)
        self._held[row] = None
        self._slots_garbage += int(self.slot_count[row])
        self.slot_count[row] = 0
        self.live[row] = False
        self._free.append(row)

    def held(self, therapist_id: uuid.UUID) -> TherapistCandidate | None:
        """What the index holds about a therapist, slots and all (None: not offered)."""
        row = self._row_of.get(therapist_id)
        return None if row is None else self._candidate(row)

    def candidates(self) -> list[TherapistCandidate]:
        return [self._candidate(row) for row in self._row_of.values()]

    def _candidate(self, row: int) -> TherapistCandidate:
        held = self._held[row]
        assert held is not None
        slots = tuple(EPOCH + int(at) * MICROS for at in self._slot_run(row))
        return dataclasses.replace(held, free_slots=slots)

    def _slot_run(self, row: int) -> Ints:
        start = int(self.slot_start[row])
        return self._slot_at[start : start + int(self.slot_count[row])]

    def _put_slots(self, row: int, at: Ints, week: Ints) -> None:
        """The row's slots from now on: appended after every run (the old run is garbage)."""
        self._slots_garbage += int(self.slot_count[row])
        self.slot_count[row] = 0
        if self._slots_garbage > max(FIRST_SLOTS, self._slots_used // 2):
            self._compact()
        needed = self._slots_used + len(at)
        if needed > len(self._slot_at):
            size = max(needed, 2 * len(self._slot_at))
            self._slot_at = _grown(self._slot_at[: self._slots_used], size)
            self._slot_week = _grown(self._slot_week[: self._slots_used], size)
        start = self._slots_used
        self._slot_at[start:needed] = at
        self._slot_week[start:needed] = week
        self.slot_start[row] = start
        self.slot_count[row] = len(at)
        self._slots_used = needed

    def _compact(self) -> None:
        """Every live run moved together, in row order; the garbage gone."""
        counts = self.slot_count[: self._rows]
        taken = _runs(self.slot_start[: self._rows], counts)
        self._slot_at = _grown(self._slot_at[taken], max(FIRST_SLOTS, 2 * len(taken)))
        self._slot_week = _grown(self._slot_week[taken], len(self._slot_at))
        self.slot_start[: self._rows] = np.cumsum(counts) - counts
        self._slots_used = len(taken)
        self._slots_garbage = 0

    def _new_row(self) -> int:
        if self._free:
            return self._free.pop()
        if self._rows == self._size:
            self._grow()
        self._rows += 1
        self._held.append(None)
        return self._rows - 1

    def _grow(self) -> None:
        self._size *= 2
        for name in (
            "live",
            "accepting",
            "licensed",
            "video",
            "in_person",
            "capacity",
            "active",
            "rating_part",
            "first_slot",
            "slot_start",
            "slot_count",
        ):
            setattr(self, name, _grown(getattr(self, name), self._size))
        for tag, column in self._tag_columns.items():
            self._tag_columns[tag] = _grown(column, self._size)

    def _untag(self, tag: tuple[str, str], row: int) -> None:
        left = self._tag_rows[tag] - 1
        if left:
            self._tag_rows[tag] = left
            self._tag_columns[tag][row] = False
        else:
            del self._tag_rows[tag], self._tag_columns[tag]

    def _column(self, tag: tuple[str, str]) -> Bools:
        column = self._tag_columns.get(tag)
        if column is None:
            column = self._tag_columns[tag] = np.zeros(self._size, np.bool_)
        return column

    def _has(self, field: str, value: str | None) -> Bools:
        column = self._tag_columns.get((field, value)) if value is not None else None
        return column[: self._rows] if column is not None else np.zeros(self._rows, np.bool_)

    # ------------------------------------------------------------------ deciding

    def decide(self, needs: IntakeNeeds, now: datetime) -> Match | Waitlist:
        """What `match(needs, self.candidates(), now)` answers."""
        failed = self._failed(needs)
        excluded = np.zeros(self._rows, np.bool_)
        for therapist_id in needs.excluded_therapist_ids:
            row = self._row_of.get(therapist_id)
            if row is not None:
                excluded[row] = True
        considered = self.live[: self._rows] & ~excluded
        eligible = considered & ~failed.any(axis=0)

        windows = WindowCheck(needs.time_windows)
        ranked = self._best(np.flatnonzero(eligible), needs, now, windows)

        problems: list[ChoiceProblem] = []
        chosen: Assessed | None = None
        chosen_id = needs.direct_therapist_id
        if chosen_id is not None:
            chosen_row = self._row_of.get(chosen_id)
            held = None if chosen_row is None else self._held[chosen_row]
            problems = choice_problems(held, needs)
            if not problems:
                assert chosen_row is not None
                chosen = assess(self._candidate(chosen_row), needs, now, windows)
        return conclude(
            needs,
            ranked,
            problems=problems,
            chosen=chosen,
            waitlist=lambda: _waitlist_reasons(failed[:, considered]),
        )

    def _failed(self, needs: IntakeNeeds) -> Bools:
        """One row per hard filter (HARD_FILTERS order), one column per index row."""
        n = self._rows
        speaks = np.zeros(n, np.bool_)
        for language in needs.languages:
            speaks |= self._has("language", language)
        in_person = self.in_person[:n] & self._has("city", _city_key(needs.city))
        video = self.video[:n]
        if needs.preferred_mode == "in_person":
            mode = in_person
        elif needs.preferred_mode == "video":
            mode = video
        else:
            mode = in_person | video
        by_filter: dict[str, Bools] = {
            "not_accepting": ~self.accepting[:n],
            "at_capacity": self.active[:n] >= self.capacity[:n],
            "method": ~self._has("method", needs.method),
            "licence": (~self.licensed[:n] if needs.requires_licensed else np.zeros(n, np.bool_)),
            "age_group": ~self._has("age", needs.age_group),
            "language": ~speaks,
            "mode": ~mode,
        }
        return np.stack([by_filter[f] for f in HARD_FILTERS])

    def _best(
        self, rows: Ints, needs: IntakeNeeds, now: datetime, windows: WindowCheck
    ) -> list[Assessed]:
        """The eligible rows that can be among the best 1 + MAX_ALTERNATIVES, assessed
        exactly by the matcher and ranked by its key.

        Free slots are the costly part (some 30 per therapist), so they are looked at only
        for rows that can still make it: every part but the slot is cheap and exact, and
        the slot part is at most what the therapist's earliest slot would earn. The best
        few by that bound are scored fully; their fourth best score is a floor no row with
        a lower bound can reach."""
        if not len(rows):
            return []
        wanted = 1 + MAX_ALTERNATIVES
        partial = self._partial_score(rows, needs)
        bound = partial + WEIGHT_FIRST_SLOT * self._slot_bound(rows, now)
        if len(rows) > wanted:
            sample = min(len(rows), 8 * wanted)
            tops = np.argpartition(-bound, sample - 1)[:sample]
            sampled = partial[tops] + WEIGHT_FIRST_SLOT * self._slot_part(rows[tops], needs, now)
            floor = np.partition(sampled, len(sampled) - wanted)[len(sampled) - wanted]
            hopeful = bound >= floor - RESCORE_MARGIN
            rows, partial = rows[hopeful], partial[hopeful]
        score = np.clip(
            partial + WEIGHT_FIRST_SLOT * self._slot_part(rows, needs, now), 0, MAX_SCORE
        )
        if len(rows) > wanted:
            floor = np.partition(score, len(score) - wanted)[len(score) - wanted]
            rows = rows[score >= floor - RESCORE_MARGIN]
        assessed = [assess(self._candidate(int(r)), needs, now, windows) for r in rows]
        return sorted(assessed, key=rank_key)

    def _partial_score(self, rows: Ints, needs: IntakeNeeds) -> Floats:
        """The matcher's score for each row without the first-slot part (before rounding)."""
        areas = needs.problem_areas
        if areas:
            overlap = np.zeros(len(rows), np.float64)
            for area in areas:
                overlap += self._has("area", area)[rows]
            area_part = overlap / len(areas)
        else:
            area_part = np.ones(len(rows), np.float64)

        rank = np.zeros(len(rows), np.float64)
        for position in reversed(range(len(needs.languages))):
            rank[self._has("language", needs.languages[position])[rows]] = position
        language_part = 1.0 / (1.0 + rank)

        load_part = 1.0 - self.active[rows] / self.capacity[rows]
        result: Floats = (
            WEIGHT_PROBLEM_AREAS * area_part
            + WEIGHT_LANGUAGE * language_part
            + WEIGHT_RATING * self.rating_part[rows]
            + WEIGHT_LOAD * load_part
        )
        return result

    def _slot_bound(self, rows: Ints, now: datetime) -> Floats:
        """At least each row's slot part: what its earliest slot would earn inside a window
        (1 when that slot is past: some later one may be anything)."""
        first = self.first_slot[rows]
        now_us = _micros(now)
        soon = np.maximum(0.0, 1.0 - (first - now_us) / (SLOT_HORIZON / MICROS))
        result: Floats = np.where(first == NO_SLOT, 0.0, np.where(first >= now_us, soon, 1.0))
        return result

    def _slot_part(self, rows: Ints, needs: IntakeNeeds, now: datetime) -> Floats:
        """Each row's first-slot part, as `first_slot` and the score compute it: the earliest
        future slot inside the windows, else the earliest future slot at a fifth."""
        lengths = self.slot_count[rows]
        total = int(lengths.sum())
        part = np.zeros(len(rows), np.float64)
        if total == 0:
            return part
        # The rows' slots, one run after another.
        runs = np.cumsum(lengths) - lengths
        taken = _runs(self.slot_start[rows], lengths)
        at, week = self._slot_at[taken], self._slot_week[taken]
        now_us = _micros(now)
        future = at >= now_us
        if needs.time_windows:
            inside = np.zeros(total, np.bool_)
            for w in needs.time_windows:
                day = w.weekday * DAY
                inside |= (week >= day + _micros_of_day(w.start)) & (
                    week < day + _micros_of_day(w.end)
                )
            inside &= future
        else:
            inside = future
        filled = lengths > 0
        first_inside = np.full(len(rows), NO_SLOT, np.int64)
        first_any = np.full(len(rows), NO_SLOT, np.int64)
        first_inside[filled] = np.minimum.reduceat(np.where(inside, at, NO_SLOT), runs[filled])
        first_any[filled] = np.minimum.reduceat(np.where(future, at, NO_SLOT), runs[filled])
        found_inside = first_inside != NO_SLOT
        slot = np.where(found_inside, first_inside, first_any)
        has_slot = slot != NO_SLOT
        waited = np.where(has_slot, slot - now_us, 0).astype(np.float64)
        soon = np.maximum(0.0, 1.0 - waited / (SLOT_HORIZON / MICROS))
        part = np.where(has_slot, np.where(found_inside, soon, soon * OUTSIDE_WINDOW_SHARE), 0.0)
        return part


def _runs(starts: Ints, lengths: Ints) -> Ints:
    """The positions of these runs' slots, one run after another."""
    offsets = np.cumsum(lengths) - lengths
    result: Ints = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
    return result


def _grown(column: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    grown = np.zeros(size, column.dtype)
    grown[: len(column)] = column
    return grown


def _waitlist_reasons(failed: Bools) -> list[WaitlistReason]:
    """`waitlist_reasons` over the failure table of the considered (not excluded) rows."""
    counts = failed.sum(axis=0)
    failing = counts > 0
    if not failing.any():
        return ["no_candidate"]
    fewest = counts[failing].min()
    telling: Bools = np.any(failed[:, counts == fewest], axis=1)
    reasons: list[WaitlistReason] = []
    for flt, tells in zip(HARD_FILTERS, telling.tolist(), strict=True):
        reason = WAITLIST_REASON_OF[flt]
        if tells and reason not in reasons:
            reasons.append(reason)
    return reasons
