"""Events as the tests, the benchmarks and the demo make them: valid, with what does not
matter to the case filled in (`**changes` sets what does)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import (
    CourseCompleted,
    CourseStarted,
    IntakeSubmitted,
    MatchApproved,
    SessionBooked,
    TherapistMatched,
    TherapistProfilePublished,
)


def a_profile(therapist_id: uuid.UUID, **changes: Any) -> TherapistProfilePublished:
    """Catalog's published profile: a licensed psychologist for IPT and grief, in Swedish,
    by video, for adults, with room for five clients."""
    fields: dict[str, Any] = dict(
        therapist_id=therapist_id,
        profession="psychologist",
        licensed=True,
        methods=["IPT"],
        focus_areas=["grief"],
        languages=["sv"],
        modes=["video"],
        age_groups=["adults"],
        capacity=5,
        accepting_new_clients=True,
    )
    fields.update(changes)
    return TherapistProfilePublished(**fields)


def a_submitted_intake(client_id: uuid.UUID, **changes: Any) -> IntakeSubmitted:
    """Matching's submitted intake: an adult, mild, CBT for stress, any meeting mode."""
    fields: dict[str, Any] = dict(
        intake_id=uuid.uuid4(),
        client_id=client_id,
        age_group="adults",
        method="KBT",
        problem_areas=["stress"],
        severity_band="mild",
        risk_level="standard",
        requires_approval=False,
        preferred_mode="either",
    )
    fields.update(changes)
    return IntakeSubmitted(**fields)


def a_match(client_id: uuid.UUID, therapist_id: uuid.UUID, **changes: Any) -> TherapistMatched:
    """Matching's match of a client with a therapist: IPT for grief, by video, no approval."""
    fields: dict[str, Any] = dict(
        match_id=uuid.uuid4(),
        intake_id=uuid.uuid4(),
        client_id=client_id,
        therapist_id=therapist_id,
        method="IPT",
        age_group="adults",
        problem_areas=["grief"],
        severity_band="moderate",
        mode="video",
        score=80,
        requires_approval=False,
    )
    fields.update(changes)
    return TherapistMatched(**fields)


def an_approval(match: TherapistMatched, **changes: Any) -> MatchApproved:
    """A clinician's approval of `match` (a clinician of its own unless given)."""
    fields: dict[str, Any] = dict(
        match_id=match.match_id,
        intake_id=match.intake_id,
        client_id=match.client_id,
        therapist_id=match.therapist_id,
        clinician_id=uuid.uuid4(),
    )
    fields.update(changes)
    return MatchApproved(**fields)


def a_session_booked(client_id: uuid.UUID, starts_at: datetime, **changes: Any) -> SessionBooked:
    """Booking's first session of a course, 45 minutes by video in Stockholm, booked by
    the client."""
    fields: dict[str, Any] = dict(
        session_id=uuid.uuid4(),
        course_id=uuid.uuid4(),
        client_id=client_id,
        therapist_id=uuid.uuid4(),
        number=1,
        phase="initial",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=45),
        time_zone="Europe/Stockholm",
        mode="video",
        booked_by="client",
    )
    fields.update(changes)
    return SessionBooked(**fields)


def a_started_course(
    course_id: uuid.UUID,
    match_id: uuid.UUID,
    client_id: uuid.UUID,
    therapist_id: uuid.UUID,
    **changes: Any,
) -> CourseStarted:
    """Booking's course opened for a match: twelve IPT sessions of 50 minutes."""
    fields: dict[str, Any] = dict(
        course_id=course_id,
        match_id=match_id,
        client_id=client_id,
        therapist_id=therapist_id,
        method="IPT",
        planned_sessions=12,
        session_minutes=50,
    )
    fields.update(changes)
    return CourseStarted(**fields)


def a_completed_course(
    course_id: uuid.UUID, client_id: uuid.UUID, therapist_id: uuid.UUID, **changes: Any
) -> CourseCompleted:
    """Booking's completed course: twelve IPT sessions, moderate to minimal (remission)."""
    fields: dict[str, Any] = dict(
        course_id=course_id,
        client_id=client_id,
        therapist_id=therapist_id,
        method="IPT",
        sessions_held=12,
        start_severity_band="moderate",
        final_severity_band="minimal",
        outcome="remission",
        completed_at=datetime.now(UTC),
    )
    fields.update(changes)
    return CourseCompleted(**fields)
