"""HTTP routes of booking: translate requests to `service` calls, and the records they
return into the response models of `responses.py`."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from booking import service
from booking.domain.availability import MAX_BUFFER_MINUTES
from booking.domain.series import MAX_SERIES_LENGTH
from booking.responses import (
    Availability,
    CourseDetail,
    CourseOut,
    DemoClock,
    Series,
    SessionOut,
    SessionWithPhq9,
    Slots,
)
from booking.settings import Settings
from chassis.app import pool_of, runtime_of
from chassis.auth import Principal, require
from chassis.errors import NotFound
from chassis.http import SIGNED_IN, problems
from contracts.events import EndReason

router = APIRouter()

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
HoursText = Annotated[
    str, StringConstraints(pattern=r"^\d{2}:\d{2}\s*-\s*\d{2}:\d{2}$", max_length=20)
]
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
]

Therapist = Annotated[Principal, Depends(require("therapist"))]
Party = Annotated[Principal, Depends(require("client", "therapist"))]
CalendarOwner = Annotated[Principal, Depends(require("therapist", "admin"))]


async def clock(request: Request) -> datetime:
    """Booking's "now": real time, moved forward only by `make demo` when the demo clock is on."""
    real = datetime.now(UTC)
    if not cast(Settings, runtime_of(request).settings).demo_clock:
        return real
    return real + timedelta(seconds=await service.clock_offset_s(pool_of(request)))


Now = Annotated[datetime, Depends(clock)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DayException(_In):
    date: date
    hours: list[HoursText] = Field(
        default_factory=list, max_length=12, description="No hours: the whole day off"
    )


class AvailabilityIn(_In):
    weekly: dict[Weekday, list[HoursText]] = Field(
        description="Working hours per weekday in the therapist's time zone, e.g. "
        '{"monday": ["09:00-12:00", "13:00-17:00"]}'
    )
    exceptions: list[DayException] = Field(default_factory=list, max_length=366)
    buffer_minutes: int = Field(default=15, ge=0, le=MAX_BUFFER_MINUTES)
    min_notice_hours: int = Field(default=12, ge=0, le=24 * 30)
    horizon_days: int = Field(default=56, ge=1, le=365)

    def document(self) -> dict[str, Any]:
        return {
            "weekly": {day: list(hours) for day, hours in self.weekly.items()},
            "exceptions": [
                {"date": e.date.isoformat(), "hours": list(e.hours)} for e in self.exceptions
            ],
            "buffer_minutes": self.buffer_minutes,
            "min_notice_hours": self.min_notice_hours,
            "horizon_days": self.horizon_days,
        }


class SessionIn(_In):
    starts_at: AwareDatetime
    idempotency_key: IdempotencyKey


class SeriesIn(_In):
    first_starts_at: AwareDatetime
    count: int = Field(ge=1, le=MAX_SERIES_LENGTH)
    every_weeks: int = Field(default=1, ge=1, le=4)
    idempotency_key: IdempotencyKey


class PlanIn(_In):
    planned_sessions: int | None = Field(default=None, ge=1, le=30)
    session_minutes: int | None = Field(default=None, ge=15, le=120)


class EndIn(_In):
    reason: EndReason


class RescheduleIn(_In):
    starts_at: AwareDatetime


class AttendanceIn(_In):
    attendance: Literal["attended", "no_show"]
    phq9_total: int | None = Field(default=None, ge=0, le=27)


# --------------------------------------------------------------------------- availability


@router.put(
    "/therapists/{therapist_id}/availability",
    response_model=Availability,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["availability"],
)
async def put_availability(
    therapist_id: uuid.UUID, body: AvailabilityIn, request: Request, who: CalendarOwner, at: Now
) -> Availability:
    document = body.document()
    set_ = await service.set_availability(pool_of(request), who, therapist_id, document, at)
    return Availability.model_validate(set_)


@router.get(
    "/therapists/{therapist_id}/availability",
    response_model=Availability,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["availability"],
)
async def get_availability(
    therapist_id: uuid.UUID, request: Request, who: CalendarOwner
) -> Availability:
    return Availability.model_validate(
        await service.get_availability(pool_of(request), who, therapist_id)
    )


@router.get(
    "/therapists/{therapist_id}/slots",
    response_model=Slots,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["availability"],
)
async def get_slots(
    therapist_id: uuid.UUID,
    request: Request,
    who: Party,
    at: Now,
    minutes: Annotated[int | None, Query(ge=15, le=120)] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> Slots:
    free = await service.free_slots_for(
        pool_of(request), who, therapist_id, at, minutes=minutes, since=since, limit=limit
    )
    return Slots.model_validate(free)


# --------------------------------------------------------------------------- courses


@router.get(
    "/courses",
    response_model=list[CourseOut],
    responses=problems(*SIGNED_IN),
    tags=["courses"],
)
async def list_courses(request: Request, who: Party) -> list[CourseOut]:
    return [CourseOut.model_validate(c) for c in await service.list_courses(pool_of(request), who)]


@router.get(
    "/courses/{course_id}",
    response_model=CourseDetail,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["courses"],
)
async def get_course(course_id: uuid.UUID, request: Request, who: Party) -> CourseDetail:
    return CourseDetail.model_validate(await service.read_course(pool_of(request), who, course_id))


@router.patch(
    "/courses/{course_id}",
    response_model=CourseOut,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["courses"],
)
async def change_plan(
    course_id: uuid.UUID, body: PlanIn, request: Request, who: Therapist, at: Now
) -> CourseOut:
    changed = await service.change_plan(
        pool_of(request), who, course_id, body.planned_sessions, body.session_minutes, at
    )
    return CourseOut.model_validate(changed)


@router.post(
    "/courses/{course_id}/end",
    response_model=CourseOut,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["courses"],
)
async def end_course(
    course_id: uuid.UUID, body: EndIn, request: Request, who: Party, at: Now
) -> CourseOut:
    ended = await service.end_course(pool_of(request), who, course_id, body.reason, at)
    return CourseOut.model_validate(ended)


# --------------------------------------------------------------------------- sessions


@router.post(
    "/courses/{course_id}/sessions",
    status_code=201,
    response_model=SessionOut,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["sessions"],
)
async def book_session(
    course_id: uuid.UUID, body: SessionIn, request: Request, who: Party, at: Now
) -> SessionOut:
    booked = await service.book_session(
        pool_of(request), who, course_id, body.starts_at, body.idempotency_key, at
    )
    return SessionOut.model_validate(booked)


@router.post(
    "/courses/{course_id}/series",
    status_code=201,
    response_model=Series,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["sessions"],
)
async def book_series(
    course_id: uuid.UUID, body: SeriesIn, request: Request, who: Party, at: Now
) -> Series:
    booked = await service.book_series(
        pool_of(request),
        who,
        course_id,
        body.first_starts_at,
        body.count,
        body.every_weeks,
        body.idempotency_key,
        at,
    )
    return Series.model_validate(booked)


@router.post(
    "/sessions/{session_id}/cancel",
    response_model=SessionOut,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["sessions"],
)
async def cancel(session_id: uuid.UUID, request: Request, who: Party, at: Now) -> SessionOut:
    return SessionOut.model_validate(await service.cancel(pool_of(request), who, session_id, at))


@router.post(
    "/sessions/{session_id}/reschedule",
    response_model=SessionOut,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["sessions"],
)
async def reschedule(
    session_id: uuid.UUID, body: RescheduleIn, request: Request, who: Party, at: Now
) -> SessionOut:
    moved = await service.reschedule(pool_of(request), who, session_id, body.starts_at, at)
    return SessionOut.model_validate(moved)


@router.post(
    "/sessions/{session_id}/attendance",
    response_model=SessionWithPhq9,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["sessions"],
)
async def attendance(
    session_id: uuid.UUID, body: AttendanceIn, request: Request, who: Therapist, at: Now
) -> SessionWithPhq9:
    held = await service.record_attendance(
        pool_of(request), who, session_id, body.attendance, body.phq9_total, at
    )
    return SessionWithPhq9.model_validate(held)


# --------------------------------------------------------------------------- demo clock


class ClockIn(_In):
    advance_hours: float = Field(gt=0, le=24 * 366)


@router.post(
    "/demo/clock",
    response_model=DemoClock,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["demo"],
    include_in_schema=False,
)
async def advance_clock(
    body: ClockIn, request: Request, who: Annotated[Principal, Depends(require("admin"))]
) -> DemoClock:
    """Moves booking's clock forward so a demo can hold a 12-week course in a minute.

    Exists only with SAMTAL_BOOKING_DEMO_CLOCK=true (`make run` sets it); never in production.
    """
    if not cast(Settings, runtime_of(request).settings).demo_clock:
        raise NotFound("Not found")
    offset = await service.advance_clock(pool_of(request), body.advance_hours * 3600)
    return DemoClock(now=datetime.now(UTC) + timedelta(seconds=offset), offset_hours=offset / 3600)
