"""A clinician's decisions: triage of a high-risk intake, approval or rejection of a
proposed match."""

from __future__ import annotations

import uuid

import asyncpg

from chassis import outbox
from contracts.events import (
    IntakeTriaged,
    MatchApproved,
    MatchRejected,
)
from contracts.oncall import OnCallRoster
from matching import store
from matching.domain import lifecycle
from matching.domain.lifecycle import IntakeStatus, TriageDecision
from matching.service.clinician_access import _audit_clinician, _may_work
from matching.service.decisions import match_intake


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
    await _may_work(conn, intake, clinician_id, roster)
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
    await _may_work(conn, intake, clinician_id, roster)
    lifecycle.decide_match(intake["status"], proposed["status"])
    # (Held until commit: a withdrawal applied meanwhile waits for this decision.)
    if approved and not await store.lock_therapist(conn, proposed["therapist_id"]):
        raise lifecycle.StepRefused(
            "the proposed therapist is no longer offered (withdrawn since the proposal):"
            " reject it, and the next therapist is proposed"
        )
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
