"""Matching's HTTP answers: one response model per route, as the OpenAPI document shows them,
and the functions that put what the use cases return into these shapes, with codes in
the reader's words (`api.py` answers with them)."""

from __future__ import annotations

import uuid
from datetime import time
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel

from chassis.http import Timestamp
from contracts.events import MatchAlternative, MatchReasonCode, RelaxedPreference, WaitlistReason
from contracts.vocabulary import (
    AgeGroup,
    MeetingMode,
    MethodCode,
    PreferredMode,
    RiskLevel,
    SeverityBand,
)
from matching.domain.explain import (
    Lang,
    explain_choice_problem,
    explain_match,
    explain_reason,
    explain_relaxed,
    explain_status,
    explain_waitlist,
)
from matching.domain.lifecycle import IntakeStatus, MatchStatus, TriageDecision
from matching.domain.matcher import ChoiceProblem, Waitlist
from matching.domain.screening import CRISIS_MESSAGE
from matching.reads import IntakeRead


class Crisis(BaseModel):
    """What a high-risk client is told at once, in both languages."""

    sv: str
    en: str


class ScreeningOut(BaseModel):
    phq9_total: int
    severity_band: SeverityBand
    risk_level: RiskLevel
    method: MethodCode | None
    age_group: AgeGroup | None
    requires_approval: bool


class Submitted(BaseModel):
    intake_id: uuid.UUID
    status: IntakeStatus
    status_text: str
    screening: ScreeningOut
    crisis: Crisis | None


class Worded(BaseModel):
    """A code and its words in the reader's language."""

    code: str
    text: str


class ReasonOut(BaseModel):
    code: MatchReasonCode
    value: str | None
    text: str


class RelaxedOut(Worded):
    code: RelaxedPreference


class ChoiceRefusedOut(Worded):
    code: ChoiceProblem


class WaitlistReasonOut(Worded):
    code: WaitlistReason


class MatchOut(BaseModel):
    match_id: uuid.UUID
    therapist_id: uuid.UUID
    score: float
    mode: MeetingMode
    status: MatchStatus
    requires_approval: bool
    approved: bool
    previous_therapist_id: uuid.UUID | None
    reasons: list[ReasonOut]
    relaxed: list[RelaxedOut]
    choice_refused: list[ChoiceRefusedOut]


class WaitlistOut(BaseModel):
    since: Timestamp
    reasons: list[WaitlistReasonOut]


class TimeWindowOut(BaseModel):
    """A weekly time the client can meet, in their local time (0 = Monday)."""

    weekday: int
    start: time
    end: time


class AnswersOut(BaseModel):
    """The answers as stored. Not an `Intake`: the rules of submitting one are checked when
    it is submitted, and a stored intake may no longer meet them (an erasure empties the
    city of an in-person intake; a rule may be tightened later)."""

    age: int
    languages: list[str]
    preferred_mode: PreferredMode
    city: str | None
    problem_areas: list[str]
    phq9: list[int]
    free_text: str | None
    time_windows: list[TimeWindowOut]
    direct_therapist_id: uuid.UUID | None
    consent_to_treatment: bool
    consent_to_health_data: bool


class IntakeOut(BaseModel):
    """The client's own intake: answers, status, match or waitlist, explained in words."""

    intake_id: uuid.UUID
    submitted_at: Timestamp
    status: IntakeStatus
    status_text: str
    screening: ScreeningOut
    answers: AnswersOut
    crisis: Crisis | None
    match: MatchOut | None
    alternatives: list[MatchAlternative]
    waitlist: WaitlistOut | None
    explanation: list[str]


class IntakeSummary(BaseModel):
    intake_id: uuid.UUID
    submitted_at: Timestamp
    status: IntakeStatus
    status_text: str
    severity_band: SeverityBand
    risk_level: RiskLevel
    method: MethodCode | None
    match_id: uuid.UUID | None
    therapist_id: uuid.UUID | None


class AuditEntry(BaseModel):
    actor_id: str
    actor_role: str
    action: str
    resource: str
    resource_id: str | None
    at: Timestamp
    # Emergency access: a clinician without standing access opened the intake, saying why.
    emergency: bool = False
    reason_code: str | None = None
    reason: str | None = None


class ProposedMatch(BaseModel):
    match_id: uuid.UUID
    therapist_id: uuid.UUID
    score: float
    mode: MeetingMode


class QueueEntry(BaseModel):
    """What a clinician needs to pick the next intake; no answers or free text."""

    intake_id: uuid.UUID
    client_id: uuid.UUID
    status: IntakeStatus
    waiting_since: Timestamp
    submitted_at: Timestamp
    risk_level: RiskLevel
    severity_band: SeverityBand
    phq9_total: int
    self_harm_answer: int
    age_group: AgeGroup | None
    method: MethodCode | None
    requires_approval: bool
    has_free_text: bool
    proposed_match: ProposedMatch | None
    # Who is working on it, so two clinicians do not unknowingly.
    claimed_by: uuid.UUID | None = None
    claimed_at: Timestamp | None = None


class Triage(BaseModel):
    decision: TriageDecision
    clinician_id: uuid.UUID
    at: Timestamp


class ClinicianIntake(IntakeOut):
    client_id: uuid.UUID
    triage: Triage | None
    # Why this clinician may open it: on call now, alerted when it was escalated (awaiting
    # triage still), has claimed it, or emergency access.
    access: Literal["on_call", "alerted", "claimed", "emergency"] | None = None
    claimed_by: uuid.UUID | None = None


class Released(BaseModel):
    intake_id: uuid.UUID
    released: bool


class Claimed(BaseModel):
    intake_id: uuid.UUID
    claimed_by: uuid.UUID
    claimed_at: Timestamp


class Triaged(BaseModel):
    intake_id: uuid.UUID
    decision: TriageDecision
    status: IntakeStatus


class Approved(BaseModel):
    match_id: uuid.UUID
    status: MatchStatus


class Rejected(BaseModel):
    match_id: uuid.UUID
    status: MatchStatus
    intake_status: IntakeStatus
    next_match_id: uuid.UUID | None
    next_therapist_id: uuid.UUID | None


# ------------------------------------------------------------------ into these shapes


def crisis() -> dict[str, str]:
    """What a high-risk client is told at once, in both languages."""
    return dict(CRISIS_MESSAGE)


def screening(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "phq9_total": row["phq9_total"],
        "severity_band": row["severity_band"],
        "risk_level": row["risk_level"],
        "method": row["method"],
        "age_group": row["age_group"],
        "requires_approval": row["requires_approval"],
    }


def intake(read: IntakeRead, lang: Lang) -> dict[str, Any]:
    """The client's own intake: answers, status, match or waitlist, explained in words."""
    row, current = read.row, read.current
    view: dict[str, Any] = {
        "intake_id": str(row["intake_id"]),
        "submitted_at": row["submitted_at"].isoformat(),
        "status": row["status"],
        "status_text": explain_status(row["status"], lang),
        "screening": screening(row),
        "answers": read.answers.model_dump(mode="json"),
        "crisis": crisis() if row["risk_level"] == "high" else None,
        "match": None,
        "alternatives": [],
        "waitlist": None,
        "explanation": [],
    }
    if current is not None and read.match is not None:
        result = read.match
        view["match"] = {
            "match_id": str(current["match_id"]),
            "therapist_id": str(current["therapist_id"]),
            "score": current["score"],
            "mode": current["mode"],
            "status": current["status"],
            "requires_approval": current["requires_approval"],
            "approved": current["status"] == "active" and current["requires_approval"],
            "previous_therapist_id": _str(current["previous_therapist_id"]),
            "reasons": [
                {"code": r.code, "value": r.value, "text": explain_reason(r, lang)}
                for r in result.reasons
            ],
            "relaxed": [{"code": c, "text": explain_relaxed(c, lang)} for c in result.relaxed],
            "choice_refused": [
                {"code": c, "text": explain_choice_problem(c, lang)} for c in result.choice_refused
            ],
        }
        view["alternatives"] = [a.model_dump(mode="json") for a in result.alternatives]
        view["explanation"] = explain_match(result, lang)
    elif row["status"] == "waitlisted":
        waiting = Waitlist(reasons=list(row["waitlist_reasons"]))
        view["waitlist"] = {
            "since": row["waitlisted_at"].isoformat(),
            "reasons": [{"code": c, "text": explain_waitlist(c, lang)} for c in waiting.reasons],
        }
        view["explanation"] = [r["text"] for r in view["waitlist"]["reasons"]]
    return view


def intake_summary(row: asyncpg.Record, lang: Lang) -> dict[str, Any]:
    return {
        "intake_id": str(row["intake_id"]),
        "submitted_at": row["submitted_at"].isoformat(),
        "status": row["status"],
        "status_text": explain_status(row["status"], lang),
        "severity_band": row["severity_band"],
        "risk_level": row["risk_level"],
        "method": row["method"],
        "match_id": _str(row["match_id"]),
        "therapist_id": _str(row["therapist_id"]),
    }


def queue_entry(row: asyncpg.Record) -> dict[str, Any]:
    """What a clinician needs to pick the next intake; answers and free text stay behind the
    audited detail read."""
    proposed = None
    if row["match_id"] is not None:
        proposed = {
            "match_id": str(row["match_id"]),
            "therapist_id": str(row["therapist_id"]),
            "score": row["score"],
            "mode": row["mode"],
        }
    return {
        "intake_id": str(row["intake_id"]),
        "client_id": str(row["client_id"]),
        "status": row["status"],
        "waiting_since": row["status_since"].isoformat(),
        "submitted_at": row["submitted_at"].isoformat(),
        "risk_level": row["risk_level"],
        "severity_band": row["severity_band"],
        "phq9_total": row["phq9_total"],
        "self_harm_answer": row["self_harm_answer"],
        "age_group": row["age_group"],
        "method": row["method"],
        "requires_approval": row["requires_approval"],
        "has_free_text": row["has_free_text"],
        "proposed_match": proposed,
        # Who is working on it (domain/access.py), so two clinicians do not unknowingly.
        "claimed_by": _str(row["claimed_by"]),
        "claimed_at": row["claimed_at"].isoformat() if row["claimed_at"] else None,
    }


def clinician_intake(read: IntakeRead, lang: Lang) -> dict[str, Any]:
    row = read.row
    view = intake(read, lang)
    view["client_id"] = str(row["client_id"])
    view["triage"] = (
        {
            "decision": row["triage_decision"],
            "clinician_id": str(row["triaged_by"]),
            "at": row["triaged_at"].isoformat(),
        }
        if row["triaged_at"] is not None
        else None
    )
    return view


def audit_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "actor_id": entry["actor_id"],
        "actor_role": entry["actor_role"],
        "action": entry["action"],
        "resource": entry["resource"],
        "resource_id": entry["resource_id"],
        "at": entry["at"].isoformat(),
        # Emergency access is flagged, with the reason the clinician gave.
        "emergency": entry["emergency"],
        "reason_code": entry["reason_code"],
        "reason": entry["reason"],
    }


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)
