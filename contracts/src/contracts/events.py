"""Every event payload Samtal publishes (docs/architecture.md, Events; docs/domain.md).

Payloads carry ids, codes and coarse facts only: never free text,
questionnaire answers, names or contact details (docs/domain.md, Privacy).
The one deliberate exception is a therapist's *practice* address and a
session's meeting link: public business facts a client needs to attend,
listed in `PUBLIC_PRACTICE_FIELDS` and checked by the privacy test.
"""

from __future__ import annotations

import uuid
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contracts.envelope import EventPayload
from contracts.vocabulary import (
    Actor,
    AgeGroup,
    CityName,
    CourseOutcome,
    FocusArea,
    LanguageCode,
    MeetingMode,
    MethodCode,
    Phase,
    PreferredMode,
    Profession,
    RiskLevel,
    Score,
    SeverityBand,
    TimeZoneName,
)

PracticeAddress = Annotated[str, StringConstraints(min_length=1, max_length=160)]
MeetingUrl = Annotated[str, StringConstraints(pattern=r"^https://[^\s]+$", max_length=200)]

# (event type, field) pairs allowed to hold a longer string: public practice facts.
PUBLIC_PRACTICE_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("TherapistProfilePublished", "practice_address"),
        ("SessionBooked", "practice_address"),
        ("SessionBooked", "meeting_url"),
        ("SessionRescheduled", "practice_address"),
        ("SessionRescheduled", "meeting_url"),
    }
)


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --------------------------------------------------------------------------- catalog


class _CatalogEvent(EventPayload):
    producer: ClassVar[str] = "catalog"
    key_field: ClassVar[str] = "therapist_id"


class TherapistProfilePublished(_CatalogEvent):
    """A therapist's profile is (again) open for matching and booking. Compacted by therapist."""

    event_type: ClassVar[str] = "TherapistProfilePublished"
    compacted: ClassVar[bool] = True

    therapist_id: uuid.UUID
    profession: Profession
    licensed: bool
    methods: list[MethodCode] = Field(min_length=1)
    focus_areas: list[FocusArea] = Field(default_factory=list)
    languages: list[LanguageCode] = Field(min_length=1)
    modes: list[MeetingMode] = Field(min_length=1)
    city: CityName | None = None
    practice_address: PracticeAddress | None = None
    age_groups: list[AgeGroup] = Field(min_length=1)
    capacity: int = Field(ge=1)
    accepting_new_clients: bool
    time_zone: TimeZoneName = "Europe/Stockholm"
    rating_average: float | None = Field(default=None, ge=1, le=5)
    rating_count: int = Field(default=0, ge=0)
    version: int = Field(default=1, ge=1, description="Profile revision; higher wins")


class TherapistProfileWithdrawn(_CatalogEvent):
    event_type: ClassVar[str] = "TherapistProfileWithdrawn"
    compacted: ClassVar[bool] = True

    therapist_id: uuid.UUID
    reason: Literal["withdrawn_by_admin", "left_platform", "licence_revoked", "other"]
    version: int = Field(default=1, ge=1)


class ReviewPublished(_CatalogEvent):
    """A verified review counted into a therapist's rating (the text stays in catalog)."""

    event_type: ClassVar[str] = "ReviewPublished"

    review_id: uuid.UUID
    therapist_id: uuid.UUID
    course_id: uuid.UUID
    rating: int = Field(ge=1, le=5)
    rating_average: float = Field(ge=1, le=5)
    rating_count: int = Field(ge=1)


# --------------------------------------------------------------------------- matching


class _IntakeEvent(EventPayload):
    producer: ClassVar[str] = "matching"
    key_field: ClassVar[str] = "intake_id"


class IntakeSubmitted(_IntakeEvent):
    """A client described their need. Answers and free text stay in matching."""

    event_type: ClassVar[str] = "IntakeSubmitted"

    intake_id: uuid.UUID
    client_id: uuid.UUID
    age_group: AgeGroup
    method: MethodCode
    problem_areas: list[FocusArea] = Field(min_length=1, max_length=2)
    severity_band: SeverityBand
    risk_level: RiskLevel
    requires_approval: bool
    preferred_mode: PreferredMode
    direct_therapist_id: uuid.UUID | None = None


class IntakeEscalated(_IntakeEvent):
    """High risk (PHQ-9 item 9 > 0): the on-call clinician must triage before anything else."""

    event_type: ClassVar[str] = "IntakeEscalated"

    intake_id: uuid.UUID
    client_id: uuid.UUID
    risk_level: Literal["high"] = "high"
    severity_band: SeverityBand


class IntakeTriaged(_IntakeEvent):
    event_type: ClassVar[str] = "IntakeTriaged"

    intake_id: uuid.UUID
    client_id: uuid.UUID
    clinician_id: uuid.UUID
    decision: Literal["resume_matching", "refer_elsewhere"]


WaitlistReason = Literal[
    "no_therapist_accepting",
    "no_language_match",
    "no_mode_match",
    "no_qualified_therapist",
    "chosen_therapist_unavailable",
    "no_candidate",
]


class IntakeWaitlisted(_IntakeEvent):
    event_type: ClassVar[str] = "IntakeWaitlisted"

    intake_id: uuid.UUID
    client_id: uuid.UUID
    reasons: list[WaitlistReason] = Field(min_length=1)


MatchReasonCode = Literal[
    "speaks_language",
    "works_with_area",
    "first_free_time",
    "offers_mode",
    "in_your_city",
    "well_rated",
    "has_room",
    "licensed_for_severity",
    "chosen_by_client",
]
RelaxedPreference = Literal[
    "language_rank", "time_windows", "mode", "problem_area_overlap", "direct_choice"
]


class MatchReason(_Part):
    """A reason as a code and one coarse value ('ar', 'grief', an ISO time); words come from it."""

    code: MatchReasonCode
    value: Annotated[str, StringConstraints(max_length=40)] | None = None


class MatchAlternative(_Part):
    therapist_id: uuid.UUID
    score: Score


class TherapistMatched(_IntakeEvent):
    event_type: ClassVar[str] = "TherapistMatched"

    match_id: uuid.UUID
    intake_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    method: MethodCode
    age_group: AgeGroup
    problem_areas: list[FocusArea] = Field(min_length=1, max_length=2)
    severity_band: SeverityBand
    mode: MeetingMode
    score: Score
    reasons: list[MatchReason] = Field(default_factory=list)
    relaxed: list[RelaxedPreference] = Field(default_factory=list)
    alternatives: list[MatchAlternative] = Field(default_factory=list, max_length=3)
    requires_approval: bool
    previous_therapist_id: uuid.UUID | None = None


class MatchApproved(_IntakeEvent):
    """A clinician approved a severe (PHQ-9 20+) intake's proposed match: booking may open."""

    event_type: ClassVar[str] = "MatchApproved"

    match_id: uuid.UUID
    intake_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    clinician_id: uuid.UUID


class MatchRejected(_IntakeEvent):
    """A clinician rejected a proposed match; matching proposes another."""

    event_type: ClassVar[str] = "MatchRejected"

    match_id: uuid.UUID
    intake_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    clinician_id: uuid.UUID


# --------------------------------------------------------------------------- booking


class _CourseEvent(EventPayload):
    producer: ClassVar[str] = "booking"
    key_field: ClassVar[str] = "course_id"


class CourseStarted(_CourseEvent):
    """A course was created for a match: the therapist's load grew by one."""

    event_type: ClassVar[str] = "CourseStarted"

    course_id: uuid.UUID
    match_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    method: MethodCode
    planned_sessions: int = Field(ge=1, le=30)
    session_minutes: int = Field(ge=15, le=120)


class SessionBooked(_CourseEvent):
    event_type: ClassVar[str] = "SessionBooked"

    session_id: uuid.UUID
    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    number: int = Field(ge=1)
    phase: Phase
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    time_zone: TimeZoneName
    mode: MeetingMode
    meeting_url: MeetingUrl | None = None
    practice_address: PracticeAddress | None = None
    booked_by: Actor
    series_id: uuid.UUID | None = None


class SessionCancelled(_CourseEvent):
    event_type: ClassVar[str] = "SessionCancelled"

    session_id: uuid.UUID
    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    starts_at: AwareDatetime
    cancelled_by: Actor
    late: bool
    counts_as_used: bool
    ends_at: AwareDatetime | None = None
    number: int | None = Field(default=None, ge=1)


class SessionRescheduled(_CourseEvent):
    event_type: ClassVar[str] = "SessionRescheduled"

    session_id: uuid.UUID
    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    previous_starts_at: AwareDatetime
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    time_zone: TimeZoneName
    mode: MeetingMode
    meeting_url: MeetingUrl | None = None
    practice_address: PracticeAddress | None = None
    rescheduled_by: Actor
    late: bool
    counts_as_used: bool
    number: int | None = Field(default=None, ge=1)


class SessionAttended(_CourseEvent):
    """The therapist recorded a session as attended or a no-show."""

    event_type: ClassVar[str] = "SessionAttended"

    session_id: uuid.UUID
    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    number: int = Field(ge=1)
    phase: Phase
    attendance: Literal["attended", "no_show"]
    phq9_recorded: bool = False


class CourseCompleted(_CourseEvent):
    event_type: ClassVar[str] = "CourseCompleted"

    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    method: MethodCode
    sessions_held: int = Field(ge=1)
    start_severity_band: SeverityBand
    final_severity_band: SeverityBand
    outcome: CourseOutcome
    completed_at: AwareDatetime


EndReason = Literal[
    "client_withdrew",
    "therapist_ended",
    "switched_therapist",
    "referred_elsewhere",
    "no_shows",
    "other",
]


class CourseEnded(_CourseEvent):
    """A course stopped before completion (`ended_early`)."""

    event_type: ClassVar[str] = "CourseEnded"

    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    reason: EndReason
    ended_by: Actor
    sessions_held: int = Field(ge=0)


class FreeSlot(_Part):
    starts_at: AwareDatetime
    minutes: int = Field(ge=15, le=120)


class TherapistAvailabilityPublished(EventPayload):
    """Free-slot summary of one therapist for matching. Compacted: the latest summary wins."""

    event_type: ClassVar[str] = "TherapistAvailabilityPublished"
    producer: ClassVar[str] = "booking"
    key_field: ClassVar[str] = "therapist_id"
    compacted: ClassVar[bool] = True

    therapist_id: uuid.UUID
    computed_at: AwareDatetime
    active_courses: int = Field(ge=0)
    free_slots: list[FreeSlot] = Field(default_factory=list, max_length=400)


# --------------------------------------------------------------------------- patient rights
#
# The same facts from every service that holds a person's data, one topic per producer.
# They carry ids, roles and codes only: the health content and any stated reason stay in
# the service where the access happened (or the data lives).

AccessAction = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
ResourceKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
ResourceRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:.\-]+$", max_length=60)]
AccessReasonCode = Literal["emergency_access"]
RightsRequestKind = Literal["export", "erasure"]
# What a service erased or keeps, as codes the notice turns into words.
DataCategory = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class _AccessRecorded(EventPayload):
    """A read or change of a person's health data was audited where it happened: who (role
    and id), what kind of record, when, and a reason code for emergency access."""

    key_field: ClassVar[str] = "subject_id"
    topic_name: ClassVar[str | None] = "access-recorded"

    entry_id: uuid.UUID
    subject_id: uuid.UUID
    actor_id: ResourceRef
    actor_role: Actor
    action: AccessAction
    resource: ResourceKind
    resource_id: ResourceRef | None = None
    reason_code: AccessReasonCode | None = None
    emergency: bool = False
    at: AwareDatetime


class CatalogAccessRecorded(_AccessRecorded):
    event_type: ClassVar[str] = "CatalogAccessRecorded"
    producer: ClassVar[str] = "catalog"


class MatchingAccessRecorded(_AccessRecorded):
    event_type: ClassVar[str] = "MatchingAccessRecorded"
    producer: ClassVar[str] = "matching"


class BookingAccessRecorded(_AccessRecorded):
    event_type: ClassVar[str] = "BookingAccessRecorded"
    producer: ClassVar[str] = "booking"


class NotificationsAccessRecorded(_AccessRecorded):
    event_type: ClassVar[str] = "NotificationsAccessRecorded"
    producer: ClassVar[str] = "notifications"


ACCESS_RECORDED: dict[str, type[_AccessRecorded]] = {
    cls.producer: cls
    for cls in (
        CatalogAccessRecorded,
        MatchingAccessRecorded,
        BookingAccessRecorded,
        NotificationsAccessRecorded,
    )
}


class RightsRequested(EventPayload):
    """A person asked for an export of their data or its erasure (GDPR art. 15/17/20).
    Every service does its part and answers with `<Service>RightsRequestHandled`."""

    event_type: ClassVar[str] = "RightsRequested"
    producer: ClassVar[str] = "notifications"
    key_field: ClassVar[str] = "subject_id"

    request_id: uuid.UUID
    subject_id: uuid.UUID
    kind: RightsRequestKind


class _RightsRequestHandled(EventPayload):
    """A service did its part of a rights request: an export part is stored with it (the
    person fetches it through the gateway), or its erasable data is erased and the
    clinical records it must keep are listed."""

    key_field: ClassVar[str] = "subject_id"
    topic_name: ClassVar[str | None] = "rights-request-handled"

    request_id: uuid.UUID
    subject_id: uuid.UUID
    kind: RightsRequestKind
    exported: list[DataCategory] = Field(default_factory=list, max_length=20)
    erased: list[DataCategory] = Field(default_factory=list, max_length=20)
    kept: list[DataCategory] = Field(default_factory=list, max_length=20)


class CatalogRightsRequestHandled(_RightsRequestHandled):
    event_type: ClassVar[str] = "CatalogRightsRequestHandled"
    producer: ClassVar[str] = "catalog"


class MatchingRightsRequestHandled(_RightsRequestHandled):
    event_type: ClassVar[str] = "MatchingRightsRequestHandled"
    producer: ClassVar[str] = "matching"


class BookingRightsRequestHandled(_RightsRequestHandled):
    event_type: ClassVar[str] = "BookingRightsRequestHandled"
    producer: ClassVar[str] = "booking"


RIGHTS_REQUEST_HANDLED: dict[str, type[_RightsRequestHandled]] = {
    cls.producer: cls
    for cls in (
        CatalogRightsRequestHandled,
        MatchingRightsRequestHandled,
        BookingRightsRequestHandled,
    )
}


ALL_EVENTS: tuple[type[EventPayload], ...] = (
    TherapistProfilePublished,
    TherapistProfileWithdrawn,
    ReviewPublished,
    IntakeSubmitted,
    IntakeEscalated,
    IntakeTriaged,
    IntakeWaitlisted,
    TherapistMatched,
    MatchApproved,
    MatchRejected,
    CourseStarted,
    SessionBooked,
    SessionCancelled,
    SessionRescheduled,
    SessionAttended,
    CourseCompleted,
    CourseEnded,
    TherapistAvailabilityPublished,
    CatalogAccessRecorded,
    MatchingAccessRecorded,
    BookingAccessRecorded,
    NotificationsAccessRecorded,
    RightsRequested,
    CatalogRightsRequestHandled,
    MatchingRightsRequestHandled,
    BookingRightsRequestHandled,
)

__all__ = [cls.__name__ for cls in ALL_EVENTS] + [
    "ACCESS_RECORDED",
    "RIGHTS_REQUEST_HANDLED",
    "PUBLIC_PRACTICE_FIELDS",
    "FreeSlot",
    "MatchAlternative",
    "MatchReason",
]
