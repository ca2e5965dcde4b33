"""Matching's HTTP answers: one response model per route, as the OpenAPI document shows them
(`views.py` puts rows into these shapes, `api.py` answers with them)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from chassis.http import Timestamp
from contracts.events import MatchAlternative, MatchReasonCode, RelaxedPreference, WaitlistReason
from contracts.vocabulary import AgeGroup, MeetingMode, MethodCode, RiskLevel, SeverityBand
from matching.domain.intake import Intake
from matching.domain.lifecycle import IntakeStatus, MatchStatus, TriageDecision
from matching.domain.matcher import ChoiceProblem


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


class IntakeOut(BaseModel):
    """The client's own intake: answers, status, match or waitlist, explained in words."""

    intake_id: uuid.UUID
    submitted_at: Timestamp
    status: IntakeStatus
    status_text: str
    screening: ScreeningOut
    answers: Intake
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
    # Why this clinician may open it: on call now, has claimed it, or emergency access.
    access: Literal["on_call", "claimed", "emergency"] | None = None
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
