"""Booking's HTTP answers: one response model per route, as the OpenAPI document shows them.

The use cases return typed records (`service/records.py`); `api.py` maps each into its
route's model here (`Model.model_validate(record)`), which also chooses what it shows."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from booking.domain.course import CourseStatus, SessionStatus
from chassis.http import Timestamp
from contracts.events import EndReason
from contracts.vocabulary import (
    CourseOutcome,
    FocusArea,
    MeetingMode,
    MethodCode,
    Phase,
    SeverityBand,
)


class _Out(BaseModel):
    # Read from the use cases' records (dataclasses) by attribute.
    model_config = ConfigDict(from_attributes=True)


class DayOff(_Out):
    date: str
    hours: list[str]


class Availability(_Out):
    therapist_id: uuid.UUID
    time_zone: str
    weekly: dict[str, list[str]]
    exceptions: list[DayOff]
    buffer_minutes: int
    min_notice_hours: int
    horizon_days: int


class SlotOut(_Out):
    starts_at: Timestamp
    ends_at: Timestamp


class Slots(_Out):
    therapist_id: uuid.UUID
    time_zone: str
    minutes: int
    slots: list[SlotOut]


class SessionOut(_Out):
    session_id: uuid.UUID
    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    number: int
    phase: Phase
    status: SessionStatus
    starts_at: Timestamp
    ends_at: Timestamp
    time_zone: str
    mode: MeetingMode
    meeting_url: str | None
    practice_address: str | None
    booked_by: str
    series_id: uuid.UUID | None
    policy_version: str
    late: bool | None
    counts_as_used: bool | None


class SessionWithPhq9(SessionOut):
    """A session as its course's detail shows it, with the PHQ-9 recorded there."""

    phq9_total: int | None = None


class CourseOut(_Out):
    course_id: uuid.UUID
    match_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    method: MethodCode
    planned_sessions: int
    session_minutes: int
    problem_areas: list[FocusArea]
    mode: MeetingMode
    status: CourseStatus
    end_reason: EndReason | None
    started_at: Timestamp
    closed_at: Timestamp | None


class CourseDetail(CourseOut):
    """The course with its sessions and outcome: health data, read under audit."""

    start_severity_band: SeverityBand | None
    final_severity_band: SeverityBand | None
    outcome: CourseOutcome | None
    sessions: list[SessionWithPhq9]


class Series(_Out):
    series_id: uuid.UUID
    sessions: list[SessionOut]


class DemoClock(_Out):
    now: Timestamp
    offset_hours: float
