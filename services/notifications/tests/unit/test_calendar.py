from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

from notifications.domain.calendar import (
    PRODID,
    SEQUENCE_EPOCH,
    sequence_for,
    session_calendar,
    session_uid,
)

SESSION = uuid.uuid4()
START = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
STAMP = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)


def parse(data: bytes) -> tuple[icalendar.Calendar, Any]:
    cal = icalendar.Calendar.from_ical(data)
    events = cal.walk("VEVENT")
    assert len(events) == 1
    return cal, events[0]


def test_request_parses_back_with_uid_times_sequence_and_method() -> None:
    data = session_calendar(
        session_id=SESSION,
        starts_at=START,
        ends_at=START + timedelta(minutes=50),
        stamp=STAMP,
        number=3,
        meeting_url="https://meet.samtal.example/s/abc",
    )
    assert isinstance(data, bytes)
    cal, event = parse(data)
    assert cal["METHOD"] == "REQUEST"
    assert cal["PRODID"] == PRODID
    assert cal["VERSION"] == "2.0"
    assert str(event["UID"]) == session_uid(SESSION)
    assert str(SESSION) in str(event["UID"])
    assert event.decoded("DTSTART") == START
    assert event.decoded("DTSTART").utcoffset() == timedelta(0)
    assert event.decoded("DTEND") == START + timedelta(minutes=50)
    assert event.decoded("DTSTAMP") == STAMP
    assert int(str(event["SEQUENCE"])) == 0
    assert str(event["SUMMARY"]) == "Samtal: session 3"
    assert str(event["URL"]) == "https://meet.samtal.example/s/abc"
    assert "https://meet.samtal.example/s/abc" in str(event["DESCRIPTION"])
    assert "LOCATION" not in event
    assert b"DTSTART:20260330T120000Z" in data


def test_a_local_start_is_written_in_utc() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2026, 3, 30, 14, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    data = session_calendar(session_id=SESSION, starts_at=local, ends_at=None, stamp=STAMP)
    assert b"DTSTART:20260330T120000Z" in data


def test_in_person_session_has_the_practice_address() -> None:
    _, event = parse(
        session_calendar(
            session_id=SESSION,
            starts_at=START,
            ends_at=START + timedelta(hours=1),
            stamp=STAMP,
            practice_address="Storgatan 1, 111 22 Stockholm",
        )
    )
    assert str(event["LOCATION"]) == "Storgatan 1, 111 22 Stockholm"
    assert "URL" not in event
    assert str(event["SUMMARY"]) == "Samtal: session"


def test_cancel_has_method_cancel_the_same_uid_and_a_higher_sequence() -> None:
    data = session_calendar(
        session_id=SESSION,
        starts_at=START,
        ends_at=None,
        stamp=STAMP,
        sequence=sequence_for(STAMP),
        method="CANCEL",
    )
    cal, event = parse(data)
    assert cal["METHOD"] == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == session_uid(SESSION)
    assert int(str(event["SEQUENCE"])) > 0


def test_sequence_grows_with_later_changes_and_fits_32_bits() -> None:
    assert 0 < sequence_for(SEQUENCE_EPOCH) < sequence_for(STAMP)
    assert sequence_for(STAMP) < sequence_for(STAMP + timedelta(seconds=1))
    assert sequence_for(datetime(2090, 1, 1, tzinfo=UTC)) < 2**31


def test_same_inputs_give_the_same_bytes() -> None:
    def build() -> bytes:
        return session_calendar(
            session_id=SESSION, starts_at=START, ends_at=None, stamp=STAMP, number=1
        )

    assert build() == build()


def test_summary_carries_no_health_details() -> None:
    _, event = parse(
        session_calendar(session_id=SESSION, starts_at=START, ends_at=None, stamp=STAMP, number=7)
    )
    summary = str(event["SUMMARY"]).lower()
    for word in ("ipt", "kbt", "depression", "phq", "sorg", "grief"):
        assert word not in summary
