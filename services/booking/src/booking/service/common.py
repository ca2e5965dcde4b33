"""Shared by booking's use cases: constants, the refusals they share, and the stored
course as the domain sees it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
import structlog

from booking import store
from booking.domain.availability import (
    Slot,
)
from booking.domain.course import Course, CourseSession
from chassis.auth import Principal
from chassis.errors import Conflict, NotFound

log = structlog.get_logger("booking.service")

# What matching is told: the next free times of a default-length session (the 50 min).
SUMMARY_SESSION_MINUTES = 50
SUMMARY_MAX_SLOTS = 400
# Where video meetings are held; a real provider would hand out these links.
MEETING_BASE_URL = "https://meet.samtal.example"
ALTERNATIVES_OFFERED = 3

Attendance = Literal["attended", "no_show"]


# --------------------------------------------------------------------------- errors


def slot_json(slot: Slot) -> dict[str, str]:
    """A free time as a refusal's details offer it (`alternatives`)."""
    texts = _SLOT_TEXTS.get(slot)
    if texts is None:  # refusals offer the same few times over and over: written once
        if len(_SLOT_TEXTS) >= _SLOT_TEXTS_KEPT:
            _SLOT_TEXTS.clear()
        texts = _SLOT_TEXTS[slot] = (slot.starts_at.isoformat(), slot.ends_at.isoformat())
    return {"starts_at": texts[0], "ends_at": texts[1]}


_SLOT_TEXTS: dict[Slot, tuple[str, str]] = {}
_SLOT_TEXTS_KEPT = 50_000


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
