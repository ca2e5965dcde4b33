"""Matching an intake: the matcher's decision over the candidates, with the chosen
therapist's place claimed in Postgres, recorded as a match or a waitlisting."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
from prometheus_client import Counter, Histogram

from chassis import outbox
from chassis.consumer import event_context
from contracts import Envelope
from contracts.events import (
    IntakeSubmitted,
    IntakeWaitlisted,
    TherapistMatched,
)
from matching import store
from matching.domain import lifecycle
from matching.domain.candidate_index import CandidateIndex
from matching.domain.lifecycle import IntakeStatus
from matching.domain.matcher import IntakeNeeds, Match, TherapistCandidate, Waitlist, match
from matching.service.common import _now

CLAIM_WAIT = Histogram(
    "samtal_matching_claim_wait_seconds",
    "Time a claim waited for its therapist's row while another decision held it (claims"
    " that found the row free wait for nothing and are not observed)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CLAIMS = Counter("samtal_matching_claims", "Claims of a therapist's place by a decision")
CLAIMS_HELD = Counter(
    "samtal_matching_claims_held",
    "Claims that found the therapist's row held by another decision and passed it over",
)
CLAIMS_REFUSED = Counter(
    "samtal_matching_claims_refused",
    "Claims that found the therapist changed since the candidates were read",
)


# A refused claim reads the therapist again and decides again; this many in a row means
# the read model changes faster than we decide: give up and let the consumer retry.
MAX_CLAIMS = 25


class Candidates(Protocol):
    """Where a decision gets its therapists: the read model in Postgres, or the worker's index."""

    async def decide(
        self, conn: asyncpg.Connection, needs: IntakeNeeds, now: datetime, *, tell: bool
    ) -> Match | Waitlist:
        """`match()` over the therapists; `tell`: waitlist reasons that tell the client."""
        ...

    def held(self, therapist_id: uuid.UUID) -> TherapistCandidate | None:
        """What the decision was based on for this therapist."""
        ...

    def refresh(self, therapist_id: uuid.UUID, fresh: TherapistCandidate | None) -> None:
        """The therapist as it is now (None: no longer offered)."""
        ...

    def recorded(self, match_id: uuid.UUID, therapist_id: uuid.UUID) -> None:
        """A match of this decision, on the therapist as the last `refresh` left it."""
        ...


@dataclass
class ReadModelCandidates:
    """Read per decision from Postgres (the api's clinician and switch steps)."""

    pool: dict[uuid.UUID, TherapistCandidate] | None = None
    everyone: bool = False

    async def decide(
        self, conn: asyncpg.Connection, needs: IntakeNeeds, now: datetime, *, tell: bool
    ) -> Match | Waitlist:
        if self.pool is None:
            self.pool = {c.therapist_id: c for c in await store.likely_candidates(conn, needs)}
        result = match(needs, self.pool.values(), now)
        if isinstance(result, Waitlist) and tell and not self.everyone:
            # Nobody fits: look at everyone to tell the client what stopped the nearest ones.
            # A failed retry keeps the reasons it had: it tells nobody, and reading every
            # therapist for each waiting intake on each retry would cost the most when
            # the waitlist is longest.
            self.pool = {c.therapist_id: c for c in await store.all_candidates(conn)}
            self.everyone = True
            result = match(needs, self.pool.values(), now)
        return result

    def held(self, therapist_id: uuid.UUID) -> TherapistCandidate | None:
        return None if self.pool is None else self.pool.get(therapist_id)

    def refresh(self, therapist_id: uuid.UUID, fresh: TherapistCandidate | None) -> None:
        assert self.pool is not None
        if fresh is None:
            self.pool.pop(therapist_id, None)
        else:
            self.pool[therapist_id] = fresh

    def recorded(self, match_id: uuid.UUID, therapist_id: uuid.UUID) -> None:
        pass  # read per decision: nothing kept to tell


class OwnMatches:
    """Which committed matches a worker's index already holds, so its keeper need not read
    their therapists again when their commits notify it (a query and a re-index per match,
    on the worker's event loop between decisions).

    A decision leaves the therapist in the index as its commit will leave them (claimed
    under the row's lock, plus the places it takes). That holds until the keeper itself
    puts that therapist again: a change committed between the claim and the match's
    commit (availability, say, which does not wait for the row lock) is read without the
    match. So each match remembers how many times the keeper had put its therapist when
    the decision last did; a notification of the match is held already only while that
    count is unchanged. Matches rolled back never notify; they are forgotten in bulk."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._keeper_puts: dict[uuid.UUID, int] = {}
        self._decided_at: dict[uuid.UUID, int] = {}
        self._pending: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}

    def decided(self, therapist_id: uuid.UUID) -> None:
        """A decision put the therapist in the index."""
        self._decided_at[therapist_id] = self._keeper_puts.get(therapist_id, 0)

    def recorded(self, match_id: uuid.UUID, therapist_id: uuid.UUID) -> None:
        if len(self._pending) >= self.LIMIT:
            self._pending.clear()
        self._pending[match_id] = (therapist_id, self._decided_at.get(therapist_id, -1))

    def read_again(self, therapist_id: uuid.UUID) -> None:
        """The keeper put (or dropped) the therapist as read from the read model."""
        self._keeper_puts[therapist_id] = self._keeper_puts.get(therapist_id, 0) + 1

    def held_already(self, therapist_id: uuid.UUID, match_id: uuid.UUID) -> bool:
        """Whether the index holds what this match's commit notified of."""
        pending = self._pending.pop(match_id, None)
        return pending == (therapist_id, self._keeper_puts.get(therapist_id, 0))


@dataclass
class IndexedCandidates:
    """The worker's in-memory candidate index (matching.domain.candidate_index)."""

    index: CandidateIndex
    own: OwnMatches | None = None

    async def decide(
        self, conn: asyncpg.Connection, needs: IntakeNeeds, now: datetime, *, tell: bool
    ) -> Match | Waitlist:
        return self.index.decide(needs, now)

    def held(self, therapist_id: uuid.UUID) -> TherapistCandidate | None:
        return self.index.held(therapist_id)

    def refresh(self, therapist_id: uuid.UUID, fresh: TherapistCandidate | None) -> None:
        # What the claim read under the row's lock is committed state: true for every decision.
        if fresh is None:
            self.index.drop(therapist_id)
        else:
            self.index.put(fresh)
            if self.own is not None:
                self.own.decided(therapist_id)

    def recorded(self, match_id: uuid.UUID, therapist_id: uuid.UUID) -> None:
        if self.own is not None:
            self.own.recorded(match_id, therapist_id)


class _Changed(Exception):
    def __init__(self, fresh: TherapistCandidate | None) -> None:
        super().__init__("the therapist changed since the candidates were read")
        self.fresh = fresh


class _Held:
    """A claim that found the therapist's row held by another decision and did not wait."""


HELD = _Held()


async def _claim(
    conn: asyncpg.Connection,
    seen: TherapistCandidate | None,
    therapist_id: uuid.UUID,
    candidates: Candidates,
    *,
    wait: bool,
) -> TherapistCandidate | _Held | None:
    """Take the therapist's row for this transaction, if the therapist is still exactly what
    the decision saw (`seen`: the same load above all); the therapist as it is now, or None
    (then the candidates hold the therapist as it is now).

    One round trip when no other decision holds the row. A refused claim keeps that row
    until commit (the next decision usually takes the same therapist with its new load).
    When another decision holds it: HELD unless `wait`; else this one waits (the wait is
    measured: CLAIM_WAIT), under a savepoint whose rollback lets the row go again if the
    claim is refused."""
    CLAIMS.inc()
    fresh = await store.claim_unless_held(conn, therapist_id)
    if fresh is not None:
        if fresh == seen:
            return fresh
        CLAIMS_REFUSED.inc()
        candidates.refresh(therapist_id, fresh)
        return None
    if not wait:
        CLAIMS_HELD.inc()
        return HELD
    try:
        async with conn.transaction():
            started = time.perf_counter()
            offered = await store.lock_therapist(conn, therapist_id)
            CLAIM_WAIT.observe(time.perf_counter() - started)
            if offered:
                [fresh] = await store.candidates_of(conn, [therapist_id])
            if fresh is None or fresh != seen:
                raise _Changed(fresh)
        return fresh
    except _Changed as changed:
        CLAIMS_REFUSED.inc()
        candidates.refresh(therapist_id, changed.fresh)
        return None


async def _decide(
    conn: asyncpg.Connection,
    intake: asyncpg.Record,
    now: datetime,
    candidates: Candidates,
    excluded: set[uuid.UUID] | None = None,
    *,
    wait_for_held: bool = True,
) -> Match | Waitlist:
    """The matcher's decision, with the chosen therapist's place claimed in Postgres: a
    claim that finds the therapist changed (another decision, another replica) decides
    again on what is true now, so the next best gets the place. `excluded`: the therapists
    the intake is never matched with again, when the caller has read them.

    Without `wait_for_held` (a batch's transaction, which may hold other therapists'
    rows already: waiting could close a cycle, a deadlock) a therapist whose row another
    decision holds is passed over for the next best; only the client's own choice, or
    nobody else fitting, is waited for."""
    if excluded is None:
        excluded = await store.excluded_therapists(conn, intake["intake_id"])
    needs = store.needs_of(intake, excluded)
    tell = intake["status"] != "waitlisted"
    passed_over: set[uuid.UUID] = set()
    deciding = needs
    for _ in range(MAX_CLAIMS):
        result = await candidates.decide(conn, deciding, now, tell=tell)
        if isinstance(result, Waitlist):
            if not passed_over:
                return result
            # Nobody else fits: wait for the therapists passed over after all.
            passed_over.clear()
            deciding, wait_for_held = needs, True
            continue
        # What the decision saw, taken before anything can change it (the worker's index
        # changes as other decisions commit): the claim compares against this.
        seen = candidates.held(result.therapist_id)
        wait = wait_for_held or result.therapist_id == needs.direct_therapist_id
        claimed = await _claim(conn, seen, result.therapist_id, candidates, wait=wait)
        if isinstance(claimed, _Held):
            passed_over.add(result.therapist_id)
            deciding = dataclasses.replace(
                needs, excluded_therapist_ids=needs.excluded_therapist_ids | passed_over
            )
            continue
        if claimed is not None:
            # The place this decision takes counts at once: the next decision (in this
            # batch, or before the committed change comes back as a notification) sees it.
            taken = dataclasses.replace(claimed, active_courses=claimed.active_courses + 1)
            candidates.refresh(result.therapist_id, taken)
            return result
    raise RuntimeError(f"no claim held in {MAX_CLAIMS} tries; the consumer retries")


def _new_match(
    intake: asyncpg.Record,
    result: Match,
    previous_therapist_id: uuid.UUID | None = None,
) -> store.NewMatch:
    """The match to record, with its TherapistMatched (its journey ids bound now)."""
    match_id = uuid.uuid4()
    requires_approval = intake["requires_approval"]
    matched = TherapistMatched(
        match_id=match_id,
        intake_id=intake["intake_id"],
        client_id=intake["client_id"],
        therapist_id=result.therapist_id,
        method=intake["method"],
        age_group=intake["age_group"],
        problem_areas=intake["problem_areas"],
        severity_band=intake["severity_band"],
        mode=result.mode,
        score=result.score,
        reasons=result.reasons,
        relaxed=result.relaxed,
        alternatives=result.alternatives,
        requires_approval=requires_approval,
        previous_therapist_id=previous_therapist_id,
    )
    return store.NewMatch(
        match_id=match_id,
        intake_id=intake["intake_id"],
        client_id=intake["client_id"],
        result=result,
        requires_approval=requires_approval,
        status=lifecycle.match_status_on_match(requires_approval),
        previous_therapist_id=previous_therapist_id,
        intake_status=lifecycle.status_on_match(requires_approval),
        events=[outbox.envelope_for(matched)],
    )


async def _record_match(
    conn: asyncpg.Connection,
    intake: asyncpg.Record,
    result: Match,
    previous_therapist_id: uuid.UUID | None = None,
) -> uuid.UUID:
    new = _new_match(intake, result, previous_therapist_id)
    await store.record_matches(conn, [new])
    return new.match_id


async def _record_waitlist(
    conn: asyncpg.Connection, intake: asyncpg.Record, result: Waitlist, now: datetime
) -> None:
    if intake["status"] == "waitlisted":  # a failed retry keeps its place and its reasons
        return
    waitlisted = IntakeWaitlisted(
        intake_id=intake["intake_id"], client_id=intake["client_id"], reasons=result.reasons
    )
    await store.set_waitlisted(
        conn, intake["intake_id"], result.reasons, now=now, events=[waitlisted]
    )


async def match_intake(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    *,
    from_states: frozenset[IntakeStatus] = lifecycle.MATCHABLE,
    now: datetime | None = None,
    candidates: Candidates | None = None,
    wait_for_held: bool = True,
) -> Match | Waitlist | None:
    """Match an intake that is in one of `from_states`; None (nothing done) otherwise.

    The intake's row is locked first, then (only) the chosen therapist's: decisions on
    different intakes and therapists run side by side on any number of replicas."""
    intake = await store.intake_to_match(conn, intake_id)
    if intake is None or intake["status"] not in from_states:
        return None
    now = now or _now()
    candidates = candidates or ReadModelCandidates()
    result = await _decide(
        conn, intake, now, candidates, set(intake["excluded"]), wait_for_held=wait_for_held
    )
    if isinstance(result, Match):
        match_id = await _record_match(conn, intake, result)
        candidates.recorded(match_id, result.therapist_id)
    else:
        await _record_waitlist(conn, intake, result, now)
    return result


async def match_submitted(
    conn: asyncpg.Connection,
    submitted: list[Envelope[IntakeSubmitted]],
    candidates: IndexedCandidates,
) -> None:
    """The matcher over a batch of submitted intakes, set-based: the intakes read in one
    round trip, every decision taken on the worker's index (each place taken counts for
    the next), the chosen therapists claimed in one round trip and the matches recorded
    in one. Should a claim find a therapist held by another decision or changed since
    the index saw it, the index learns what is true now and the intakes that chose that
    therapist are decided again one by one (`match_intake`), as are a waitlisting and a
    client's own choice (they may wait for a held therapist)."""
    intakes = await store.intakes_to_match(conn, [e.payload.intake_id for e in submitted])
    now = _now()
    decided: list[tuple[Envelope[IntakeSubmitted], asyncpg.Record, Match, TherapistCandidate]] = []
    alone: list[Envelope[IntakeSubmitted]] = []
    # Each chosen therapist as the index held it before this batch took a place.
    before: dict[uuid.UUID, TherapistCandidate] = {}
    for envelope in submitted:
        intake = intakes.get(envelope.payload.intake_id)
        if intake is None or intake["status"] not in lifecycle.MATCHABLE:
            continue  # held for a clinician, or decided already
        needs = store.needs_of(intake)
        result = candidates.index.decide(needs, now)
        seen = None if isinstance(result, Waitlist) else candidates.held(result.therapist_id)
        if (
            isinstance(result, Waitlist)
            or seen is None
            or result.therapist_id == needs.direct_therapist_id
        ):
            alone.append(envelope)
            continue
        before.setdefault(result.therapist_id, seen)
        taken = dataclasses.replace(seen, active_courses=seen.active_courses + 1)
        candidates.refresh(result.therapist_id, taken)
        decided.append((envelope, intake, result, seen))
    if decided:
        CLAIMS.inc(len(decided))
        matches = []
        for envelope, intake, result, _ in decided:
            with event_context(envelope):
                matches.append(_new_match(intake, result))
        # Claimed and recorded in one round trip; each statement sees the places the ones
        # before it took, so each decision compares with exactly what it saw.
        claimed = await store.claim_and_record(conn, matches)
        # A decision stands when its therapist is exactly what it saw. One that does not
        # (held by another decision: not recorded; changed: recorded, so taken back) is
        # decided again on its own, and so is every later one on the same therapist.
        failed: dict[uuid.UUID, TherapistCandidate | None] = {}
        undone: list[tuple[store.NewMatch, asyncpg.Record]] = []
        again = set()
        for (envelope, intake, result, seen), new in zip(decided, matches, strict=True):
            therapist_id = result.therapist_id
            fresh = claimed.get(new.match_id)
            if therapist_id in failed or fresh is None or fresh != seen:
                failed.setdefault(therapist_id, fresh)
                if fresh is not None:
                    undone.append((new, intake))
                again.add(envelope.event_id)
            else:
                candidates.recorded(new.match_id, therapist_id)
        if undone:
            await store.undo_matches(conn, [m for m, _ in undone], [i for _, i in undone])
        for therapist_id, fresh in failed.items():
            if fresh is None:
                CLAIMS_HELD.inc()
            else:
                CLAIMS_REFUSED.inc()
            # What is true now where the claim read it (with the places this batch kept
            # before it), elsewhere what the index had before the batch.
            candidates.refresh(therapist_id, fresh if fresh is not None else before[therapist_id])
        if again:
            again.update(e.event_id for e in alone)
            alone = [e for e in submitted if e.event_id in again]
    for envelope in alone:
        with event_context(envelope):
            await match_intake(
                conn, envelope.payload.intake_id, candidates=candidates, wait_for_held=False
            )
