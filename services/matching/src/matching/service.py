"""The service's use cases: each runs in the caller's transaction, state and events together.

The routes (api.py) and the event handlers (handlers.py) only translate into these.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
import structlog
from prometheus_client import Counter, Gauge, Histogram

from chassis import audit, outbox, retention, rights
from chassis.app import Runtime
from chassis.settings import ServiceSettings
from contracts.events import (
    IntakeEscalated,
    IntakeSubmitted,
    IntakeTriaged,
    IntakeWaitlisted,
    MatchApproved,
    MatchRejected,
    RightsRequested,
    TherapistMatched,
)
from contracts.oncall import OnCallRoster
from matching import store
from matching.domain import access, lifecycle
from matching.domain.candidate_index import CandidateIndex
from matching.domain.intake import Intake
from matching.domain.lifecycle import IntakeStatus, TriageDecision
from matching.domain.matcher import IntakeNeeds, Match, TherapistCandidate, Waitlist, match
from matching.domain.screening import Screening, screen_intake
from matching.domain.waitlist import WaitingIntake, waitlist_order

log = structlog.get_logger("matching.service")

AWAITING_TRIAGE_OLDEST = Gauge(
    "samtal_intakes_awaiting_triage_oldest_seconds",
    "How long the oldest high-risk intake has waited for a clinician's triage (0: none)",
)
WAITLISTED = Gauge("samtal_intakes_waitlisted", "Intakes waiting on the waitlist")
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
INDEX_THERAPISTS = Gauge(
    "samtal_matching_index_therapists", "Therapists in this worker's candidate index"
)
# A refused claim reads the therapist again and decides again; this many in a row means
# the read model changes faster than we decide: give up and let the consumer retry.
MAX_CLAIMS = 25


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- submitting


@dataclass(frozen=True)
class Submitted:
    intake_id: uuid.UUID
    screening: Screening
    status: IntakeStatus


async def submit(conn: asyncpg.Connection, client_id: uuid.UUID, intake: Intake) -> Submitted:
    """Screen and store an intake; the matcher picks it up from IntakeSubmitted.

    Raises ScreeningRefused (under 12) before anything is stored.
    """
    screening = screen_intake(intake)
    intake_id = uuid.uuid4()
    status = lifecycle.status_on_submit(screening)
    events: list[IntakeSubmitted | IntakeEscalated] = [
        IntakeSubmitted(
            intake_id=intake_id,
            client_id=client_id,
            age_group=screening.age_group,
            method=screening.method,
            problem_areas=list(intake.problem_areas),
            severity_band=screening.band,
            risk_level=screening.risk_level,
            requires_approval=screening.requires_approval,
            preferred_mode=intake.preferred_mode,
            direct_therapist_id=intake.direct_therapist_id,
        )
    ]
    if screening.escalate:
        events.append(
            IntakeEscalated(intake_id=intake_id, client_id=client_id, severity_band=screening.band)
        )
    await store.insert_intake(
        conn,
        intake_id=intake_id,
        client_id=client_id,
        intake=intake,
        screening=screening,
        status=status,
        events=events,
    )
    await audit.record(
        conn,
        actor_id=str(client_id),
        actor_role="client",
        subject_id=client_id,
        action="create",
        resource="intake",
        resource_id=str(intake_id),
    )
    return Submitted(intake_id, screening, status)


# --------------------------------------------------------------------------- matching


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


@dataclass
class IndexedCandidates:
    """The worker's in-memory candidate index (matching.domain.candidate_index)."""

    index: CandidateIndex

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
    needs = IntakeNeeds.from_intake(
        intake["intake_id"], store.intake_of(intake), store.screening_of(intake), excluded
    )
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


async def _record_match(
    conn: asyncpg.Connection,
    intake: asyncpg.Record,
    result: Match,
    previous_therapist_id: uuid.UUID | None = None,
) -> uuid.UUID:
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
    await store.record_match(
        conn,
        match_id=match_id,
        intake_id=intake["intake_id"],
        client_id=intake["client_id"],
        result=result,
        requires_approval=requires_approval,
        status=lifecycle.match_status_on_match(requires_approval),
        previous_therapist_id=previous_therapist_id,
        intake_status=lifecycle.status_on_match(requires_approval),
        events=[matched],
    )
    return match_id


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
    result = await _decide(
        conn,
        intake,
        now,
        candidates or ReadModelCandidates(),
        set(intake["excluded"]),
        wait_for_held=wait_for_held,
    )
    if isinstance(result, Match):
        await _record_match(conn, intake, result)
    else:
        await _record_waitlist(conn, intake, result, now)
    return result


# --------------------------------------------------------------------------- clinicians


async def triage(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    clinician_id: uuid.UUID,
    decision: TriageDecision,
    *,
    roster: OnCallRoster | None = None,
) -> IntakeStatus | None:
    """Record the triage; on resume the matcher runs at once. None: no such intake.

    Raises access.AccessRefused / ClaimedByAnother when the clinician may not work on it."""
    intake = await store.get_intake(conn, intake_id, for_update=True)
    if intake is None:
        return None
    await _may_work(conn, intake_id, clinician_id, roster)
    status = lifecycle.triage(intake["status"], decision)
    await store.record_triage(
        conn, intake_id, clinician_id=clinician_id, decision=decision, status=status
    )
    await _audit_clinician(conn, clinician_id, intake["client_id"], "triage", intake_id)
    await outbox.add(
        conn,
        IntakeTriaged(
            intake_id=intake_id,
            client_id=intake["client_id"],
            clinician_id=clinician_id,
            decision=decision,
        ),
    )
    if status in lifecycle.MATCHABLE:
        await match_intake(conn, intake_id)
        refreshed = await store.get_intake(conn, intake_id)
        assert refreshed is not None
        status = refreshed["status"]
    return status


async def approve(
    conn: asyncpg.Connection,
    match_id: uuid.UUID,
    clinician_id: uuid.UUID,
    *,
    roster: OnCallRoster | None = None,
) -> bool:
    """False: no such match."""
    decided = await _clinician_decides(conn, match_id, clinician_id, approved=True, roster=roster)
    return decided is not None


async def reject(
    conn: asyncpg.Connection,
    match_id: uuid.UUID,
    clinician_id: uuid.UUID,
    *,
    roster: OnCallRoster | None = None,
) -> uuid.UUID | None:
    """Reject a proposed match; the matcher proposes the next candidate (or waitlists).
    Returns the intake's id; None: no such match."""
    intake_id = await _clinician_decides(
        conn, match_id, clinician_id, approved=False, roster=roster
    )
    if intake_id is None:
        return None
    await match_intake(conn, intake_id)
    await store.wake_waitlist(conn)  # the rejected therapist's place is free again
    return intake_id


async def _clinician_decides(
    conn: asyncpg.Connection,
    match_id: uuid.UUID,
    clinician_id: uuid.UUID,
    *,
    approved: bool,
    roster: OnCallRoster | None,
) -> uuid.UUID | None:
    """A clinician's decision on a proposed match, recorded, audited and announced.
    Returns the intake's id; None: no such match."""
    proposed = await store.get_match(conn, match_id, for_update=True)
    if proposed is None:
        return None
    intake = await store.get_intake(conn, proposed["intake_id"], for_update=True)
    assert intake is not None
    await _may_work(conn, intake["intake_id"], clinician_id, roster)
    lifecycle.decide_match(intake["status"], proposed["status"])
    await store.set_match_status(
        conn, match_id, "active" if approved else "rejected", decided_by=clinician_id
    )
    await store.therapist_changed(conn, proposed["therapist_id"])
    await store.set_status(conn, intake["intake_id"], "matched" if approved else "matching")
    await _audit_clinician(
        conn,
        clinician_id,
        intake["client_id"],
        "approve" if approved else "reject",
        intake["intake_id"],
    )
    decision = MatchApproved if approved else MatchRejected
    await outbox.add(
        conn,
        decision(
            match_id=match_id,
            intake_id=intake["intake_id"],
            client_id=intake["client_id"],
            therapist_id=proposed["therapist_id"],
            clinician_id=clinician_id,
        ),
    )
    intake_id: uuid.UUID = intake["intake_id"]
    return intake_id


async def _audit_clinician(
    conn: asyncpg.Connection,
    clinician_id: uuid.UUID,
    client_id: uuid.UUID,
    action: str,
    intake_id: uuid.UUID,
) -> None:
    await audit.record(
        conn,
        actor_id=str(clinician_id),
        actor_role="clinician",
        subject_id=client_id,
        action=action,
        resource="intake",
        resource_id=str(intake_id),
    )


# --------------------------------------------------------------------------- clinician access


def needs_clinician(intake: asyncpg.Record) -> bool:
    """An intake a clinician works on (triage or approval); other intakes are not theirs."""
    return bool(intake["risk_level"] == "high" or intake["requires_approval"])


async def _claim_of(conn: asyncpg.Connection, intake_id: uuid.UUID) -> access.Claim | None:
    row = await store.get_claim(conn, intake_id)
    return access.Claim(row["clinician_id"], row["claimed_at"]) if row else None


async def _may_work(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    clinician_id: uuid.UUID,
    roster: OnCallRoster | None,
) -> None:
    access.may_work(
        clinician_id,
        _now(),
        roster,
        await _claim_of(conn, intake_id),
        await store.emergency_access_until(conn, intake_id, clinician_id),
    )


@dataclass(frozen=True)
class Opened:
    intake: asyncpg.Record
    current: asyncpg.Record | None
    standing: access.Standing
    claim: access.Claim | None


async def open_intake(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    clinician_id: uuid.UUID,
    roster: OnCallRoster | None,
    *,
    reason: str | None = None,
) -> Opened | None:
    """A clinician opens an intake with its answers and free text, audited.

    Without standing access a stated `reason` opens it anyway (emergency access: granted
    for a while, audited with the reason, flagged). None: no such intake for a clinician.
    Raises access.AccessRefused without standing access and without a reason."""
    intake = await store.get_intake(conn, intake_id)
    if intake is None or not needs_clinician(intake):
        return None
    now = _now()
    claim = await _claim_of(conn, intake_id)
    until = await store.emergency_access_until(conn, intake_id, clinician_id)
    found = access.standing(clinician_id, now, roster, claim, until)
    if found is None and reason is not None:
        await store.grant_emergency_access(
            conn, intake_id, clinician_id, reason, now + access.EMERGENCY_ACCESS_FOR
        )
        found = "emergency"
    elif found is None:
        access.may_open(clinician_id, now, roster, claim, until)  # raises AccessRefused
    emergency = found == "emergency"
    await audit.record(
        conn,
        actor_id=str(clinician_id),
        actor_role="clinician",
        subject_id=intake["client_id"],
        action="read",
        resource="intake",
        resource_id=str(intake_id),
        # Reads under an emergency grant stay flagged; the first one carries the reason.
        reason_code=audit.EMERGENCY_ACCESS if emergency else None,
        reason=reason if emergency else None,
        emergency=emergency,
    )
    assert found is not None
    return Opened(intake, await store.current_match(conn, intake_id), found, claim)


async def claim_intake(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    clinician_id: uuid.UUID,
    roster: OnCallRoster | None,
    *,
    take_over: bool = False,
) -> access.Claim | None:
    """Claim an intake for triage (or take another's claim over, knowingly). None: no such
    intake for a clinician. Raises AccessRefused / ClaimedByAnother."""
    intake = await store.get_intake(conn, intake_id, for_update=True)
    if intake is None or not needs_clinician(intake):
        return None
    claim = await _claim_of(conn, intake_id)
    access.may_claim(
        clinician_id,
        _now(),
        roster,
        claim,
        await store.emergency_access_until(conn, intake_id, clinician_id),
        take_over=take_over,
    )
    row = await store.set_claim(conn, intake_id, clinician_id)
    if claim is None or claim.clinician_id != clinician_id:
        await _audit_clinician(conn, clinician_id, intake["client_id"], "claim", intake_id)
    return access.Claim(row["clinician_id"], row["claimed_at"])


async def release_intake(
    conn: asyncpg.Connection, intake_id: uuid.UUID, clinician_id: uuid.UUID
) -> bool:
    """Give one's own claim up; False: this clinician holds no claim on it."""
    return await store.release_claim(conn, intake_id, clinician_id)


# --------------------------------------------------------------------------- patient rights

# What an erasure empties here, and what it keeps as the clinical record (and why: the
# notice in notifications says it in words).
ERASED = ["intake_free_text", "intake_city", "intake_time_windows"]
KEPT = ["intake_screening", "matches", "triage", "audit_log"]


async def handle_rights_request(conn: asyncpg.Connection, requested: RightsRequested) -> None:
    """Export this service's part, or erase what need not be kept, and answer."""
    if requested.kind == "export":
        data = await store.personal_data(conn, requested.subject_id)
        data["access_log"] = await audit.for_subject(conn, requested.subject_id)
        intakes, matches = len(data["intakes"]), len(data["matches"])
        count = rights.counted
        await rights.store_export(
            conn,
            requested,
            data,
            [
                f"Matchning: {count(intakes, 'förfrågan', 'förfrågningar')} (svar, fritext,"
                f" screening), {count(matches, 'matchning', 'matchningar')}, vilka som läst dem"
            ],
            [
                f"Matching: {count(intakes, 'intake', 'intakes')} (answers, free text,"
                f" screening), {count(matches, 'match', 'matches')}, who read them"
            ],
        )
    else:
        await store.erase_free_text(conn, requested.subject_id)
        await rights.record_erasure(conn, requested, erased=ERASED, kept=KEPT)


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The retention job's part here: clinical records ten years after the last entry."""
    return {
        "intakes": await store.purge_expired(conn, now - retention.CLINICAL_RETENTION),
        "export_parts": await rights.purge_export_parts(conn, now),
    }


# --------------------------------------------------------------------------- switching


class NobodyToSwitchTo(Exception):
    """No other therapist fits now; the client keeps the current one."""

    def __init__(self, result: Waitlist) -> None:
        super().__init__("nobody to switch to")
        self.result = result


async def switch(
    conn: asyncpg.Connection, intake_id: uuid.UUID, client_id: uuid.UUID
) -> uuid.UUID | None:
    """Rematch with the current therapist excluded; the new match's id. None: not theirs."""
    intake = await store.get_intake(conn, intake_id, for_update=True)
    if intake is None or intake["client_id"] != client_id:
        return None
    lifecycle.switch(intake["status"])
    current = await store.current_match(conn, intake_id)
    assert current is not None, "a matched intake has a current match"
    # Marked switched first: that is what excludes the current therapist.
    await store.set_match_status(conn, current["match_id"], "switched")
    result = await _decide(conn, intake, _now(), ReadModelCandidates())
    if isinstance(result, Waitlist):
        raise NobodyToSwitchTo(result)  # the caller's transaction rolls back
    match_id = await _record_match(
        conn, intake, result, previous_therapist_id=current["therapist_id"]
    )
    await audit.record(
        conn,
        actor_id=str(client_id),
        actor_role="client",
        subject_id=client_id,
        action="switch",
        resource="intake",
        resource_id=str(intake_id),
    )
    await store.therapist_changed(conn, current["therapist_id"])
    await store.wake_waitlist(conn)
    return match_id


# --------------------------------------------------------------------------- the waitlist


async def retry_waitlist(pool: asyncpg.Pool, candidates: Candidates | None = None) -> int:
    """One pass over the waitlist, first come first served, each intake in its own
    transaction. Returns how many were matched."""
    async with pool.acquire() as conn:
        rows = await store.waitlisted(conn)
    order = waitlist_order(WaitingIntake(r["intake_id"], r["waitlisted_at"]) for r in rows)
    matched = 0
    for waiting in order:
        async with pool.acquire() as conn, conn.transaction():
            result = await match_intake(
                conn, waiting.intake_id, from_states=lifecycle.RETRYABLE, candidates=candidates
            )
        matched += isinstance(result, Match)
    if matched:
        log.info("waitlist retried", waiting=len(order), matched=matched)
    return matched


async def waitlist_retrier(runtime: Runtime) -> None:
    """Worker task: a pass whenever a handler says capacity may have opened, and every
    `waitlist_retry_s` as a safety net.

    The wake-up comes from the index keeper (keep_candidate_index), which hears the
    committed NOTIFY on the same connection as the therapist changes committed with it,
    and passes it on only once the index holds them: a pass never decides on an index
    that has not yet seen the therapist who opened the place."""
    pool = runtime.pool
    assert pool is not None
    every: float = getattr(runtime.settings, "waitlist_retry_s", 30.0)
    keeping = _keeping(runtime.settings)
    keeping.waitlist_wake.set()  # a first pass at start: wake-ups may have come meanwhile
    while True:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(keeping.waitlist_wake.wait(), every)
            keeping.waitlist_wake.clear()
            await retry_waitlist(pool, await worker_index(runtime.settings))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: wait, then try again
            log.warning("waitlist retry failed; retrying", error=str(exc))
            keeping.waitlist_wake.set()
            await asyncio.sleep(1.0)


# --------------------------------------------------------------------------- the candidate index


@dataclass
class _IndexKeeping:
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    index: CandidateIndex = field(default_factory=CandidateIndex)
    # Set by the keeper once the index holds what was committed before a waitlist wake-up.
    waitlist_wake: asyncio.Event = field(default_factory=asyncio.Event)


# One per database and schema a worker in this process serves (tests run several workers
# in one process; they share the read model, so they may share its index).
_INDEXES: dict[tuple[str, str], _IndexKeeping] = {}


def _keeping(settings: ServiceSettings) -> _IndexKeeping:
    return _INDEXES.setdefault((settings.database_url, settings.db_schema), _IndexKeeping())


async def worker_index(settings: ServiceSettings) -> IndexedCandidates:
    """The worker's candidate index, once built: decisions wait for the (re)build, so a
    (re)started worker never decides on a partial index."""
    keeping = _keeping(settings)
    await asyncio.wait_for(keeping.ready.wait(), settings.startup_timeout_s)
    return IndexedCandidates(keeping.index)


INDEX_PAGE = 1000


async def _built_index(conn: asyncpg.Connection) -> CandidateIndex:
    """The index from the read model, a page at a time (what changes meanwhile is named
    by a notification the keeper reads again after)."""
    index = CandidateIndex()
    after: uuid.UUID | None = None
    while page := await store.candidates_after(conn, after, INDEX_PAGE):
        for candidate in page:
            index.put(candidate)
        after = page[-1].therapist_id
    return index


async def keep_candidate_index(runtime: Runtime) -> None:
    """Worker task: builds the candidate index from the read model, then reads again every
    therapist a committed NOTIFY names (store.therapist_changed). It listens before it
    reads, so no change falls between; a lost connection (notifications may be lost
    with it) builds the index anew."""
    pool = runtime.pool
    assert pool is not None
    keeping = _keeping(runtime.settings)
    channel = store.therapists_channel(runtime.settings.db_schema)
    waitlist = store.waitlist_channel(runtime.settings.db_schema)
    changed: set[uuid.UUID] = set()
    poke = asyncio.Event()
    waitlist_woken = False

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        changed.add(uuid.UUID(payload))
        poke.set()

    def on_waitlist(*_: object) -> None:
        # Heard on this connection after the therapist changes committed before it (or
        # with it): passed on to the retrier once they are in the index.
        nonlocal waitlist_woken
        waitlist_woken = True
        poke.set()

    while True:
        try:
            async with pool.acquire() as conn:
                await conn.add_listener(channel, on_notify)
                await conn.add_listener(waitlist, on_waitlist)
                try:
                    started = time.perf_counter()
                    changed.clear()
                    gc.unfreeze()  # a rebuild: the old index may go
                    keeping.index = await _built_index(conn)
                    # Tens of thousands of long-lived objects: out of the collector's way,
                    # so its passes (and the pauses they add to decisions) stay short.
                    gc.collect()
                    gc.freeze()
                    keeping.ready.set()
                    keeping.waitlist_wake.set()  # wake-ups may have been lost meanwhile
                    INDEX_THERAPISTS.set(len(keeping.index))
                    log.info(
                        "candidate index built",
                        therapists=len(keeping.index),
                        ms=round((time.perf_counter() - started) * 1000),
                    )
                    while True:
                        await poke.wait()
                        poke.clear()
                        ids = list(changed)
                        changed.clear()
                        wake, waitlist_woken = waitlist_woken, False
                        if ids:
                            fresh = {
                                c.therapist_id: c for c in await store.candidates_of(conn, ids)
                            }
                            for therapist_id in ids:
                                if therapist_id in fresh:
                                    keeping.index.put(fresh[therapist_id])
                                else:
                                    keeping.index.drop(therapist_id)
                            INDEX_THERAPISTS.set(len(keeping.index))
                        if wake:
                            keeping.waitlist_wake.set()
                finally:
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(channel, on_notify)
                        await conn.remove_listener(waitlist, on_waitlist)
        except asyncio.CancelledError:
            keeping.ready.clear()
            raise
        except Exception as exc:  # the database went away: build anew once it is back
            keeping.ready.clear()
            log.warning("candidate index lost its feed; building it anew", error=str(exc))
            await asyncio.sleep(1.0)


async def waiting_watch(runtime: Runtime) -> None:
    """Worker task: keeps the waiting gauges fresh (a page fires when a crisis intake waits
    too long for triage; deploy/prometheus/alerts.yaml)."""
    pool = runtime.pool
    assert pool is not None
    every: float = getattr(runtime.settings, "waiting_watch_s", 15.0)
    while True:
        try:
            async with pool.acquire() as conn:
                figures = await store.waiting_figures(conn)
            AWAITING_TRIAGE_OLDEST.set(figures["triage_oldest_s"])
            WAITLISTED.set(figures["waitlisted"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: the gauges keep their last value
            log.warning("waiting figures unavailable", error=str(exc))
        await asyncio.sleep(every)
