"""Sample events for the notifications unit tests (pure: no infrastructure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.envelope import Envelope, EventPayload
from contracts.events import (
    CourseCompleted,
    CourseEnded,
    IntakeEscalated,
    IntakeSubmitted,
    IntakeTriaged,
    IntakeWaitlisted,
    MatchAlternative,
    MatchApproved,
    MatchReason,
    SessionBooked,
    SessionCancelled,
    SessionRescheduled,
    TherapistMatched,
)
from notifications.domain.contacts import OnCallRoster

# Friday before the spring DST change (Sunday 29 March 2026) in Europe/Stockholm.
T0 = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)


class Samples:
    def __init__(self) -> None:
        self.client_id = uuid.uuid4()
        self.therapist_id = uuid.uuid4()
        self.clinician_ids = [uuid.uuid4(), uuid.uuid4()]
        self.intake_id = uuid.uuid4()
        self.course_id = uuid.uuid4()
        self.session_id = uuid.uuid4()
        self.match_id = uuid.uuid4()
        self.roster = OnCallRoster(clinician_ids=self.clinician_ids)

    def wrap(self, payload: EventPayload, at: datetime = T0) -> Envelope[Any]:
        return Envelope.wrap(payload, occurred_at=at)

    def intake_submitted(self, **kw: Any) -> IntakeSubmitted:
        data: dict[str, Any] = {
            "intake_id": self.intake_id,
            "client_id": self.client_id,
            "age_group": "adults",
            "method": "IPT",
            "problem_areas": ["grief"],
            "severity_band": "moderate",
            "risk_level": "standard",
            "requires_approval": False,
            "preferred_mode": "video",
        }
        return IntakeSubmitted(**(data | kw))

    def intake_escalated(self) -> IntakeEscalated:
        return IntakeEscalated(
            intake_id=self.intake_id, client_id=self.client_id, severity_band="severe"
        )

    def intake_triaged(self, decision: str = "resume_matching") -> IntakeTriaged:
        return IntakeTriaged(
            intake_id=self.intake_id,
            client_id=self.client_id,
            clinician_id=self.clinician_ids[0],
            decision=decision,  # type: ignore[arg-type]
        )

    def therapist_matched(self, **kw: Any) -> TherapistMatched:
        data: dict[str, Any] = {
            "match_id": self.match_id,
            "intake_id": self.intake_id,
            "client_id": self.client_id,
            "therapist_id": self.therapist_id,
            "method": "IPT",
            "age_group": "adults",
            "problem_areas": ["grief"],
            "severity_band": "moderate",
            "mode": "video",
            "score": 81.5,
            "reasons": [
                MatchReason(code="speaks_language", value="ar"),
                MatchReason(code="works_with_area", value="grief"),
                MatchReason(code="first_free_time", value="2026-03-03T13:00:00+00:00"),
                MatchReason(code="well_rated", value="4.8"),
            ],
            "relaxed": ["time_windows"],
            "alternatives": [MatchAlternative(therapist_id=uuid.uuid4(), score=70)],
            "requires_approval": False,
        }
        return TherapistMatched(**(data | kw))

    def intake_waitlisted(self) -> IntakeWaitlisted:
        return IntakeWaitlisted(
            intake_id=self.intake_id,
            client_id=self.client_id,
            reasons=["no_language_match", "no_therapist_accepting"],
        )

    def match_approved(self) -> MatchApproved:
        return MatchApproved(
            match_id=self.match_id,
            intake_id=self.intake_id,
            client_id=self.client_id,
            therapist_id=self.therapist_id,
            clinician_id=self.clinician_ids[0],
        )

    def session_booked(
        self, starts_at: datetime = T0 + timedelta(days=10), **kw: Any
    ) -> SessionBooked:
        data: dict[str, Any] = {
            "session_id": self.session_id,
            "course_id": self.course_id,
            "client_id": self.client_id,
            "therapist_id": self.therapist_id,
            "number": 3,
            "phase": "initial",
            "starts_at": starts_at,
            "ends_at": starts_at + timedelta(minutes=50),
            "time_zone": "Europe/Stockholm",
            "mode": "video",
            "meeting_url": "https://meet.samtal.example/s/abc123",
            "booked_by": "client",
        }
        return SessionBooked(**(data | kw))

    def session_cancelled(self, **kw: Any) -> SessionCancelled:
        data: dict[str, Any] = {
            "session_id": self.session_id,
            "course_id": self.course_id,
            "client_id": self.client_id,
            "therapist_id": self.therapist_id,
            "starts_at": T0 + timedelta(days=10),
            "cancelled_by": "client",
            "late": False,
            "counts_as_used": False,
        }
        return SessionCancelled(**(data | kw))

    def session_rescheduled(
        self, starts_at: datetime = T0 + timedelta(days=12), **kw: Any
    ) -> SessionRescheduled:
        data: dict[str, Any] = {
            "session_id": self.session_id,
            "course_id": self.course_id,
            "client_id": self.client_id,
            "therapist_id": self.therapist_id,
            "previous_starts_at": T0 + timedelta(days=10),
            "starts_at": starts_at,
            "ends_at": starts_at + timedelta(minutes=50),
            "time_zone": "Europe/Stockholm",
            "mode": "in_person",
            "practice_address": "Storgatan 1, 111 22 Stockholm",
            "rescheduled_by": "therapist",
            "late": False,
            "counts_as_used": False,
        }
        return SessionRescheduled(**(data | kw))

    def course_completed(self, outcome: str = "response") -> CourseCompleted:
        return CourseCompleted(
            course_id=self.course_id,
            client_id=self.client_id,
            therapist_id=self.therapist_id,
            method="IPT",
            sessions_held=14,
            start_severity_band="moderately_severe",
            final_severity_band="mild",
            outcome=outcome,  # type: ignore[arg-type]
            completed_at=T0,
        )

    def course_ended(self) -> CourseEnded:
        return CourseEnded(
            course_id=self.course_id,
            client_id=self.client_id,
            therapist_id=self.therapist_id,
            reason="client_withdrew",
            ended_by="client",
            sessions_held=4,
        )

    def every_event(self) -> list[EventPayload]:
        return [
            self.intake_submitted(),
            self.intake_submitted(direct_therapist_id=self.therapist_id, requires_approval=True),
            self.intake_escalated(),
            self.intake_triaged("resume_matching"),
            self.intake_triaged("refer_elsewhere"),
            self.therapist_matched(),
            self.therapist_matched(requires_approval=True, reasons=[], relaxed=[], alternatives=[]),
            self.intake_waitlisted(),
            self.match_approved(),
            self.session_booked(),
            self.session_booked(mode="in_person", meeting_url=None, practice_address="Storgatan 1"),
            self.session_cancelled(),
            self.session_cancelled(cancelled_by="client", late=True, counts_as_used=True),
            self.session_rescheduled(),
            self.course_completed("response"),
            self.course_completed("remission"),
            self.course_completed("neither"),
            self.course_ended(),
        ]


@pytest.fixture
def samples() -> Samples:
    return Samples()
