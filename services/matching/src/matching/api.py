"""HTTP routes: clients submit and follow their intakes; clinicians triage and approve.

Every read of intake data is written to the audit log; somebody else's intake is a 404.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from chassis import audit
from chassis.app import pool_of, runtime_of
from chassis.auth import Principal, require
from chassis.errors import Conflict, DomainError, NotAllowed, NotFound
from chassis.http import SIGNED_IN, problems
from contracts.inputs import Text
from contracts.oncall import OnCallRoster
from matching import reads, responses, service
from matching.domain import access
from matching.domain.explain import Lang, explain_status, explain_waitlist
from matching.domain.intake import Intake
from matching.domain.lifecycle import IntakeInProgress, StepRefused, TriageDecision
from matching.domain.screening import ScreeningRefused
from matching.responses import (
    Approved,
    AuditEntry,
    Claimed,
    ClinicianIntake,
    IntakeOut,
    IntakeSummary,
    QueueEntry,
    Rejected,
    Released,
    Submitted,
    Triaged,
)

router = APIRouter()

Client = Annotated[Principal, Depends(require("client"))]
Clinician = Annotated[Principal, Depends(require("clinician"))]
Language = Annotated[Literal["sv", "en"], Query(description="language of the words: sv or en")]

INTAKE_NOT_FOUND = "No such intake"
NOBODY_TO_SWITCH_TO = {
    "sv": "Ingen annan terapeut kan ta emot dig just nu; du behåller din terapeut.",
    "en": "No other therapist can take you right now; you keep your therapist.",
}
MATCH_NOT_FOUND = "No such match"


def _refused(exc: StepRefused) -> Conflict:
    return Conflict(str(exc), code="step_not_allowed")


def _in_progress(exc: IntakeInProgress, lang: str) -> Conflict:
    extra = {} if exc.intake_id is None else {"intake_id": str(exc.intake_id)}
    return Conflict(exc.messages[lang], code=exc.code, messages=exc.messages, **extra)


async def _audit_read(
    conn: Any, who: Principal, client_id: uuid.UUID, resource: str, resource_id: str | None
) -> None:
    await audit.record(
        conn,
        actor_id=who.id,
        actor_role=who.role,
        subject_id=client_id,
        action="read",
        resource=resource,
        resource_id=resource_id,
    )


# --------------------------------------------------------------------------- clients


@router.post(
    "/intakes",
    status_code=201,
    response_model=Submitted,
    responses=problems(*SIGNED_IN, 409, 422),
    tags=["intakes"],
)
async def submit_intake(
    body: Intake, request: Request, who: Client, lang: Language = "sv"
) -> dict[str, Any]:
    """Submit an intake. A high-risk answer gets the crisis text at once, in sv and en.
    It replaces the client's intake still waiting for a therapist (matching, waitlisted).
    One that awaits a clinician or has a therapist until its course ends answers 409
    `intake_in_progress` naming it; a high-risk intake is always taken."""
    try:
        async with pool_of(request).acquire() as conn:  # (its own transaction)
            submitted = await service.submit(conn, who.subject, body)
    except ScreeningRefused as exc:
        raise DomainError(
            exc.message_sv if lang == "sv" else exc.message_en,
            code=exc.code,
            messages={"sv": exc.message_sv, "en": exc.message_en},
        ) from exc
    except IntakeInProgress as exc:
        raise _in_progress(exc, lang) from exc
    screening = submitted.screening
    return {
        "intake_id": str(submitted.intake_id),
        "status": submitted.status,
        "status_text": explain_status(submitted.status, lang),
        "screening": {
            "phq9_total": screening.total,
            "severity_band": screening.band,
            "risk_level": screening.risk_level,
            "method": screening.method,
            "age_group": screening.age_group,
            "requires_approval": screening.requires_approval,
        },
        "crisis": responses.crisis() if screening.escalate else None,
    }


@router.get(
    "/intakes",
    response_model=list[IntakeSummary],
    responses=problems(*SIGNED_IN, 422),
    tags=["intakes"],
)
async def my_intakes(request: Request, who: Client, lang: Language = "sv") -> list[dict[str, Any]]:
    async with pool_of(request).acquire() as conn, conn.transaction():
        rows = await reads.clients_intakes(conn, who.subject)
        if rows:  # an empty list reads nobody's health data
            await _audit_read(conn, who, who.subject, "intake_list", None)
    return [responses.intake_summary(row, lang) for row in rows]


@router.get(
    "/intakes/{intake_id}",
    response_model=IntakeOut,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["intakes"],
)
async def my_intake(
    intake_id: uuid.UUID, request: Request, who: Client, lang: Language = "sv"
) -> dict[str, Any]:
    """The intake with its status, match (or waitlist) and why, in words."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        read = await reads.clients_intake(conn, who.subject, intake_id)
        if read is None:
            raise NotFound(INTAKE_NOT_FOUND)
        await _audit_read(conn, who, who.subject, "intake", str(intake_id))
    return responses.intake(read, lang)


@router.post(
    "/intakes/{intake_id}/switch",
    response_model=IntakeOut,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["intakes"],
)
async def switch_therapist(
    intake_id: uuid.UUID, request: Request, who: Client, lang: Language = "sv"
) -> dict[str, Any]:
    """Ask for another therapist: a rematch with the current one excluded."""
    try:
        async with pool_of(request).acquire() as conn, conn.transaction():
            match_id = await service.switch(conn, intake_id, who.subject)
            if match_id is None:
                raise NotFound(INTAKE_NOT_FOUND)
            read = await reads.intake(conn, intake_id)
            await _audit_read(conn, who, who.subject, "intake", str(intake_id))
    except StepRefused as exc:
        raise _refused(exc) from exc
    except IntakeInProgress as exc:
        raise _in_progress(exc, lang) from exc
    except service.NobodyToSwitchTo as exc:
        raise Conflict(
            NOBODY_TO_SWITCH_TO[lang],
            code="nobody_to_switch_to",
            reasons=[{"code": c, "text": explain_waitlist(c, lang)} for c in exc.result.reasons],
        ) from exc
    assert read is not None
    return responses.intake(read, lang)


@router.get(
    "/me/audit",
    response_model=list[AuditEntry],
    responses=problems(*SIGNED_IN, 422),
    tags=["intakes"],
)
async def my_audit_log(
    request: Request, who: Client, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> list[dict[str, Any]]:
    """Who read or changed my data here, and when: the newest `limit` entries, oldest first
    (every service's, paged: notifications' `/me/access-log`; all of it: an export)."""
    async with pool_of(request).acquire() as conn:
        entries = await audit.for_subject(conn, who.subject, newest=limit)
    return [responses.audit_entry(e) for e in entries]


# --------------------------------------------------------------------------- clinicians


@router.get(
    "/clinician/queue",
    response_model=list[QueueEntry],
    responses=problems(*SIGNED_IN, 422),
    tags=["clinicians"],
)
async def clinician_queue(
    request: Request,
    who: Clinician,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Intakes awaiting triage (first: a crisis) or approval, longest waiting first; no
    answers or free text."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        rows = await reads.clinician_queue(conn, limit)
        for row in rows:
            await _audit_read(conn, who, row["client_id"], "intake_summary", str(row["intake_id"]))
    return [responses.queue_entry(row) for row in rows]


def _roster(request: Request) -> OnCallRoster | None:
    roster: OnCallRoster | None = getattr(runtime_of(request).settings, "on_call_roster", None)
    return roster


@contextlib.contextmanager
def _access_translated() -> Iterator[None]:
    try:
        yield
    except access.AccessRefused as exc:
        raise NotAllowed(str(exc), code=exc.code) from exc
    except access.ClaimedByAnother as exc:
        raise Conflict(
            str(exc),
            code=exc.code,
            claimed_by=str(exc.claim.clinician_id),
            claimed_at=exc.claim.claimed_at.isoformat(),
        ) from exc


def _opened(opened: service.Opened, lang: Lang) -> dict[str, Any]:
    view = responses.clinician_intake(reads.read_of(opened.intake, opened.current), lang)
    view["access"] = opened.standing
    view["claimed_by"] = str(opened.claim.clinician_id) if opened.claim else None
    return view


@router.get(
    "/clinician/intakes/{intake_id}",
    response_model=ClinicianIntake,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["clinicians"],
)
async def clinician_intake(
    intake_id: uuid.UUID, request: Request, who: Clinician, lang: Language = "sv"
) -> dict[str, Any]:
    """Everything the client answered, free text included, for an intake that needs (or
    needed) a clinician: for the clinicians on call, the one who claimed it, or one with
    emergency access (403 `emergency_access_required` otherwise). Other intakes are not a
    clinician's to read."""
    with _access_translated():
        async with pool_of(request).acquire() as conn, conn.transaction():
            opened = await service.open_intake(conn, intake_id, who.subject, _roster(request))
    if opened is None:
        raise NotFound(INTAKE_NOT_FOUND)
    return _opened(opened, lang)


class EmergencyAccessIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # Text: no NUL or lone surrogate reaches Postgres (a 422 naming the field instead).
    reason: Text = Field(
        min_length=access.REASON_MIN_LENGTH,
        max_length=access.REASON_MAX_LENGTH,
        description="Why you open an intake you are not on call for; the client sees that "
        "you did (and this reason in the intake service's log)",
    )


@router.post(
    "/clinician/intakes/{intake_id}/emergency-access",
    response_model=ClinicianIntake,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["clinicians"],
)
async def emergency_access(
    intake_id: uuid.UUID,
    body: EmergencyAccessIn,
    request: Request,
    who: Clinician,
    lang: Language = "sv",
) -> dict[str, Any]:
    """Open an intake without standing access, stating why (422 without a reason). Audited
    with the reason, flagged, shown to the client; access lasts a while (`access`)."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        opened = await service.open_intake(
            conn, intake_id, who.subject, _roster(request), reason=body.reason
        )
    if opened is None:
        raise NotFound(INTAKE_NOT_FOUND)
    return _opened(opened, lang)


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    take_over: bool = Field(
        default=False, description="take another clinician's claim over, knowingly"
    )


@router.post(
    "/clinician/intakes/{intake_id}/claim",
    response_model=Claimed,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["clinicians"],
)
async def claim_intake(
    intake_id: uuid.UUID, request: Request, who: Clinician, body: ClaimIn | None = None
) -> dict[str, Any]:
    """Claim an intake for triage, so no other clinician works on it unknowingly (409
    `claimed_by_another` names who has it; `take_over` takes it knowingly)."""
    with _access_translated():
        async with pool_of(request).acquire() as conn, conn.transaction():
            claim = await service.claim_intake(
                conn,
                intake_id,
                who.subject,
                _roster(request),
                take_over=body.take_over if body else False,
            )
    if claim is None:
        raise NotFound(INTAKE_NOT_FOUND)
    return {
        "intake_id": str(intake_id),
        "claimed_by": str(claim.clinician_id),
        "claimed_at": claim.claimed_at.isoformat(),
    }


@router.delete(
    "/clinician/intakes/{intake_id}/claim",
    response_model=Released,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["clinicians"],
)
async def release_intake(intake_id: uuid.UUID, request: Request, who: Clinician) -> Released:
    """Give your claim on an intake up."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        released = await service.release_intake(conn, intake_id, who.subject)
    if not released:
        raise NotFound("You hold no claim on this intake")
    return Released(intake_id=intake_id, released=True)


class TriageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: TriageDecision


@router.post(
    "/clinician/intakes/{intake_id}/triage",
    response_model=Triaged,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["clinicians"],
)
async def triage_intake(
    intake_id: uuid.UUID, body: TriageIn, request: Request, who: Clinician
) -> dict[str, Any]:
    """Record the triage of a high-risk intake; resume_matching runs the matcher at once."""
    try:
        with _access_translated():
            async with pool_of(request).acquire() as conn, conn.transaction():
                status = await service.triage(
                    conn, intake_id, who.subject, body.decision, roster=_roster(request)
                )
    except StepRefused as exc:
        raise _refused(exc) from exc
    if status is None:
        raise NotFound(INTAKE_NOT_FOUND)
    return {"intake_id": str(intake_id), "decision": body.decision, "status": status}


@router.post(
    "/clinician/matches/{match_id}/approve",
    response_model=Approved,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["clinicians"],
)
async def approve_match(match_id: uuid.UUID, request: Request, who: Clinician) -> dict[str, Any]:
    """Approve a severe intake's proposed match: booking may open."""
    try:
        with _access_translated():
            async with pool_of(request).acquire() as conn, conn.transaction():
                found = await service.approve(conn, match_id, who.subject, roster=_roster(request))
    except StepRefused as exc:
        raise _refused(exc) from exc
    if not found:
        raise NotFound(MATCH_NOT_FOUND)
    return {"match_id": str(match_id), "status": "active"}


@router.post(
    "/clinician/matches/{match_id}/reject",
    response_model=Rejected,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["clinicians"],
)
async def reject_match(match_id: uuid.UUID, request: Request, who: Clinician) -> dict[str, Any]:
    """Reject a proposed match; the matcher proposes the next candidate (or waitlists)."""
    try:
        with _access_translated():
            async with pool_of(request).acquire() as conn, conn.transaction():
                intake_id = await service.reject(
                    conn, match_id, who.subject, roster=_roster(request)
                )
                if intake_id is None:
                    raise NotFound(MATCH_NOT_FOUND)
                read = await reads.intake(conn, intake_id)
    except StepRefused as exc:
        raise _refused(exc) from exc
    assert read is not None
    proposed = read.current
    return {
        "match_id": str(match_id),
        "status": "rejected",
        "intake_status": read.row["status"],
        "next_match_id": str(proposed["match_id"]) if proposed else None,
        "next_therapist_id": str(proposed["therapist_id"]) if proposed else None,
    }
