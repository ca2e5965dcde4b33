"""What booking's use cases return, and an idempotent booking's answer as it is kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from booking.domain.errors import CourseFull, InvalidAvailability, SlotUnavailable
from booking.service.records import (
    SeriesRecord,
    SessionRecord,
    kept,
    series_kept,
    session_kept,
)
from booking.service.sessions import _fingerprint, _session_fingerprint
from chassis.http import status_of

STARTS = datetime(2026, 3, 2, 9, tzinfo=UTC)


def a_session(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "session_id": uuid.uuid4(),
        "course_id": uuid.uuid4(),
        "client_id": uuid.uuid4(),
        "therapist_id": uuid.uuid4(),
        "number": 1,
        "phase": "initial",
        "status": "booked",
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=50),
        "time_zone": "Europe/Stockholm",
        "mode": "video",
        "meeting_url": "https://meet.samtal.example/s/x",
        "practice_address": None,
        "booked_by": "client",
        "series_id": None,
        "policy_version": "2026-01",
        "late": None,
        "counts_as_used": None,
        "buffer_minutes": 15,  # stored, not answered
    }
    row.update(changes)
    return row


def test_a_kept_answer_is_the_same_record_again() -> None:
    booked = SessionRecord.of(a_session())
    assert booked.phq9_total is None  # a session about to be booked has none yet
    assert session_kept(kept(booked)) == booked
    series = SeriesRecord(uuid.uuid4(), [booked, SessionRecord.of(a_session(number=2))])
    assert series_kept(kept(series)) == series


def test_an_answer_kept_before_records_still_reads() -> None:
    """Answers kept as JSON before the records existed had no `phq9_total`."""
    booked = SessionRecord.of(a_session())
    earlier = kept(booked)
    del earlier["phq9_total"]
    assert session_kept(earlier) == booked


def test_bookings_refusals_are_the_chassis_kinds() -> None:
    assert status_of(InvalidAvailability("hours_unreadable", "no")) == 422
    assert status_of(SlotUnavailable("taken", "no")) == 409
    assert status_of(CourseFull(12)) == 409
    assert CourseFull(12).body()["code"] == "course_full"


def test_a_booking_is_fingerprinted_as_its_request_always_was() -> None:
    course, starts_at = uuid.uuid4(), datetime(2026, 12, 7, 10, 15, tzinfo=UTC)
    expected = _fingerprint(op="session", course=course, starts_at=starts_at.isoformat())
    assert _session_fingerprint(course, starts_at) == expected
