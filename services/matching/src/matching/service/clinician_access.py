"""Who may work on an intake: a clinician opens, claims and releases it (on call,
claimant or emergency access), audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from chassis import audit
from contracts.oncall import OnCallRoster
from matching import store
from matching.domain import access
from matching.service.common import _now


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


def needs_clinician(intake: asyncpg.Record) -> bool:
    """An intake a clinician works on (triage or approval); other intakes are not theirs."""
    return bool(intake["risk_level"] == "high" or intake["requires_approval"])


async def _claim_of(conn: asyncpg.Connection, intake_id: uuid.UUID) -> access.Claim | None:
    row = await store.get_claim(conn, intake_id)
    return access.Claim(row["clinician_id"], row["claimed_at"]) if row else None


def alerted_at(intake: asyncpg.Record) -> datetime | None:
    """When the clinicians then on call were alerted about the intake, while it still
    awaits triage: escalated when submitted (notifications alerts from that moment)."""
    return intake["submitted_at"] if intake["status"] == "awaiting_triage" else None


async def _may_work(
    conn: asyncpg.Connection,
    intake: asyncpg.Record,
    clinician_id: uuid.UUID,
    roster: OnCallRoster | None,
) -> None:
    intake_id = intake["intake_id"]
    access.may_work(
        clinician_id,
        _now(),
        roster,
        await _claim_of(conn, intake_id),
        await store.emergency_access_until(conn, intake_id, clinician_id),
        alerted_at(intake),
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
    found = access.standing(clinician_id, now, roster, claim, until, alerted_at(intake))
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
        alerted_at(intake),
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
