"""What booking's use cases return: the stored course, session, hours and free times as
typed values. `api.py` answers with them through the response models of `responses.py`,
which choose what each route shows (a session's PHQ-9 only in its course's detail)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from booking.domain.availability import Slot


@dataclass(frozen=True)
class SessionRecord:
    session_id: uuid.UUID
    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    number: int
    phase: str
    status: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    mode: str
    meeting_url: str | None
    practice_address: str | None
    booked_by: str
    series_id: uuid.UUID | None
    policy_version: str
    late: bool | None
    counts_as_used: bool | None
    phq9_total: int | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> SessionRecord:
        """From a stored session (or one about to be stored, which has no PHQ-9 yet)."""
        values = {f.name: row[f.name] for f in fields(cls) if f.name != "phq9_total"}
        return cls(**values, phq9_total=row.get("phq9_total"))


@dataclass(frozen=True)
class SeriesRecord:
    series_id: uuid.UUID
    sessions: list[SessionRecord]


# A booking's answer is kept with its idempotency key and given again to a retry: as JSON.
BOOKED = TypeAdapter(SessionRecord | SeriesRecord)


def kept(answer: SessionRecord | SeriesRecord) -> dict[str, Any]:
    """The answer as it is kept for the idempotency key."""
    stored: dict[str, Any] = BOOKED.dump_python(answer, mode="json")
    return stored


def kept_json(answer: SessionRecord | SeriesRecord) -> str:
    """`kept`, as JSON text in one pass (a booking sends it to the statement that books)."""
    return BOOKED.dump_json(answer).decode()


def session_kept(stored: Mapping[str, Any]) -> SessionRecord:
    return TypeAdapter(SessionRecord).validate_python(stored)


def series_kept(stored: Mapping[str, Any]) -> SeriesRecord:
    return TypeAdapter(SeriesRecord).validate_python(stored)


@dataclass(frozen=True)
class CourseRecord:
    course_id: uuid.UUID
    match_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    method: str
    planned_sessions: int
    session_minutes: int
    problem_areas: list[str]
    mode: str
    status: str
    end_reason: str | None
    started_at: datetime
    closed_at: datetime | None
    # The detail (health data, read under audit): only with its sessions.
    start_severity_band: str | None = None
    final_severity_band: str | None = None
    outcome: str | None = None
    sessions: list[SessionRecord] | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any], sessions: Sequence[Any] | None = None) -> CourseRecord:
        basic = {f.name: row[f.name] for f in fields(cls) if f.default is MISSING}
        basic["problem_areas"] = list(basic["problem_areas"])
        if sessions is None:
            return cls(**basic)
        return cls(
            **basic,
            start_severity_band=row["start_severity_band"],
            final_severity_band=row["final_severity_band"],
            outcome=row["outcome"],
            sessions=[SessionRecord.of(s) for s in sessions],
        )


@dataclass(frozen=True)
class AvailabilityRecord:
    therapist_id: uuid.UUID
    time_zone: str
    weekly: dict[str, list[str]]
    exceptions: list[dict[str, Any]]
    buffer_minutes: int
    min_notice_hours: int
    horizon_days: int

    @classmethod
    def of(
        cls, therapist_id: uuid.UUID, time_zone: str, row: Mapping[str, Any]
    ) -> AvailabilityRecord:
        return cls(
            therapist_id=therapist_id,
            time_zone=time_zone,
            weekly=row["weekly"],
            exceptions=row["exceptions"],
            buffer_minutes=row["buffer_minutes"],
            min_notice_hours=row["min_notice_hours"],
            horizon_days=row["horizon_days"],
        )


@dataclass(frozen=True)
class FreeSlots:
    therapist_id: uuid.UUID
    time_zone: str
    minutes: int
    slots: list[Slot]
