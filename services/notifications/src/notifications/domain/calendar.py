"""The calendar (.ics) attachment for a session (RFC 5545 / iTIP, via icalendar).

- UID is stable per session, so a reschedule or a cancellation updates the same
  calendar entry; SEQUENCE grows with each change (`sequence_for`).
- Times are written in UTC; calendar programs show them in the reader's zone.
- SUMMARY holds no health details: "Samtal: session 3".
- DTSTAMP is the event's time, so a redelivered event yields identical bytes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import icalendar

PRODID = "-//Samtal//Samtal notifications//SV"
UID_DOMAIN = "samtal"
CalendarMethod = Literal["REQUEST", "CANCEL"]
# SEQUENCE = whole seconds since this moment at the change; booking itself is 0.
SEQUENCE_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
ICS_FILENAME = "samtal-session.ics"


def session_uid(session_id: uuid.UUID) -> str:
    return f"session-{session_id}@{UID_DOMAIN}"


def sequence_for(changed_at: datetime) -> int:
    """A SEQUENCE that grows with every later change and is the same on redelivery.

    The first booking is SEQUENCE 0; a change is numbered by its time, so two
    reschedules in order get increasing numbers without a stored counter.
    Fits a signed 32-bit integer until the 2090s.
    """
    return max(1, int((changed_at - SEQUENCE_EPOCH).total_seconds()))


def content_type(method: CalendarMethod) -> str:
    return f"text/calendar; method={method}; charset=UTF-8"


def session_calendar(
    *,
    session_id: uuid.UUID,
    starts_at: datetime,
    ends_at: datetime | None,
    stamp: datetime,
    sequence: int = 0,
    method: CalendarMethod = "REQUEST",
    number: int | None = None,
    meeting_url: str | None = None,
    practice_address: str | None = None,
    organizer: str | None = None,
) -> bytes:
    """The .ics bytes for one session; METHOD CANCEL marks the entry cancelled."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)

    event = icalendar.Event()
    event.add("uid", session_uid(session_id))
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", starts_at.astimezone(UTC))
    if ends_at is not None:
        event.add("dtend", ends_at.astimezone(UTC))
    event.add("sequence", sequence)
    event.add("summary", f"Samtal: session {number}" if number else "Samtal: session")
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    if practice_address:
        event.add("location", practice_address)
    if meeting_url:
        event.add("url", meeting_url)
        event.add("description", f"Videolänk / video link: {meeting_url}")
    if organizer:
        event.add("organizer", organizer)
    cal.add_component(event)
    return bytes(cal.to_ical())
