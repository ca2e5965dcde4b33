"""Shared by booking's use cases: constants, how domain errors become answers, and the
stored course and session as the domain and the answers see them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import asyncpg
import structlog

from booking import store
from booking.domain import errors
from booking.domain.availability import (
    Slot,
)
from booking.domain.course import Course, CourseSession
from chassis.auth import Principal
from chassis.errors import Conflict, Invalid, NotFound

log = structlog.get_logger("booking.service")

# What matching is told: the next free times of a default-length session (the 50 min).
SUMMARY_SESSION_MINUTES = 50
SUMMARY_MAX_SLOTS = 400
# Where video meetings are held; a real provider would hand out these links.
MEETING_BASE_URL = "https://meet.samtal.example"
ALTERNATIVES_OFFERED = 3

Attendance = Literal["attended", "no_show"]


# --------------------------------------------------------------------------- errors


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Domain rule violations become answers a frontend can show: 422 or 409."""
    try:
        yield
    except errors.InvalidInput as exc:
        raise Invalid(exc.message, code=exc.code) from exc
    except errors.Conflict as exc:
        raise Conflict(exc.message, code=exc.code) from exc


def slot_json(slot: Slot) -> dict[str, str]:
    return {"starts_at": slot.starts_at.isoformat(), "ends_at": slot.ends_at.isoformat()}


def taken(code: str, message: str, offered: Sequence[Slot]) -> Conflict:
    return Conflict(message, code=code, alternatives=[slot_json(s) for s in offered])


def not_found(what: str = "course") -> NotFound:
    return NotFound(f"No such {what}.")


# --------------------------------------------------------------------------- courses


def course_of(row: Any, sessions: Sequence[Any]) -> Course:
    """Stored course and sessions as the domain's course."""
    return Course(
        method=row["method"],
        planned_sessions=row["planned_sessions"],
        session_minutes=row["session_minutes"],
        status=row["status"],
        end_reason=row["end_reason"],
        sessions=tuple(
            CourseSession(
                session_id=s["session_id"],
                number=s["number"],
                phase=s["phase"],
                starts_at=s["starts_at"],
                status=s["status"],
                phq9_total=s["phq9_total"],
            )
            for s in sessions
        ),
    )


def session_json(row: Any, with_phq9: bool = False) -> dict[str, Any]:
    found = {
        "session_id": str(row["session_id"]),
        "course_id": str(row["course_id"]),
        "client_id": str(row["client_id"]),
        "therapist_id": str(row["therapist_id"]),
        "number": row["number"],
        "phase": row["phase"],
        "status": row["status"],
        "starts_at": row["starts_at"].isoformat(),
        "ends_at": row["ends_at"].isoformat(),
        "time_zone": row["time_zone"],
        "mode": row["mode"],
        "meeting_url": row["meeting_url"],
        "practice_address": row["practice_address"],
        "booked_by": row["booked_by"],
        "series_id": str(row["series_id"]) if row["series_id"] else None,
        "policy_version": row["policy_version"],
        "late": row["late"],
        "counts_as_used": row["counts_as_used"],
    }
    if with_phq9:
        found["phq9_total"] = row["phq9_total"]
    return found


def course_json(row: Any, sessions: Sequence[Any] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "course_id": str(row["course_id"]),
        "match_id": str(row["match_id"]),
        "client_id": str(row["client_id"]),
        "therapist_id": str(row["therapist_id"]),
        "method": row["method"],
        "planned_sessions": row["planned_sessions"],
        "session_minutes": row["session_minutes"],
        "problem_areas": list(row["problem_areas"]),
        "mode": row["mode"],
        "status": row["status"],
        "end_reason": row["end_reason"],
        "started_at": row["started_at"].isoformat(),
        "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
    }
    if sessions is not None:  # the detail view: health data, read under audit
        found["start_severity_band"] = row["start_severity_band"]
        found["final_severity_band"] = row["final_severity_band"]
        found["outcome"] = row["outcome"]
        found["sessions"] = [session_json(s, with_phq9=True) for s in sessions]
    return found


def is_party(who: Principal, row: Any) -> bool:
    if who.role == "client":
        return bool(row["client_id"] == who.subject)
    if who.role == "therapist":
        return bool(row["therapist_id"] == who.subject)
    return False


async def course_for(conn: asyncpg.Connection, who: Principal, course_id: uuid.UUID) -> Any:
    """The course if `who` is its client or therapist; otherwise 404, as if it did not exist."""
    row = await store.get_course(conn, course_id)
    if row is None or not is_party(who, row):
        raise not_found()
    return row


async def reread_course(conn: asyncpg.Connection, course_id: uuid.UUID) -> Any:
    """A course known to exist, read again (under the lock, or after a change)."""
    row = await store.get_course(conn, course_id)
    assert row is not None
    return row


async def reread_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> Any:
    row = await store.get_session(conn, session_id)
    assert row is not None
    return row
