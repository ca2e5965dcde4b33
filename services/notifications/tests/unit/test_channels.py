from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime, timedelta

import icalendar

from notifications.channels import _scrub, compose_email
from notifications.domain.calendar import ICS_FILENAME, content_type, session_calendar

START = datetime(2026, 3, 20, 13, 0, tzinfo=UTC)


def test_an_email_carries_the_calendar_as_an_attachment_that_parses() -> None:
    session_id = uuid.uuid4()
    ics = session_calendar(
        session_id=session_id,
        starts_at=START,
        ends_at=START + timedelta(minutes=50),
        stamp=START - timedelta(days=3),
        number=2,
    )
    msg = compose_email(
        sender="Samtal <no-reply@samtal.se>",
        to="ann@example.se",
        subject="Bokad: session 2 fredag 20 mars kl. 14:00",
        body="Hej!\n\nSession 2 är bokad.",
        language="sv",
        message_id="<delivery-7@samtal.se>",
        attachment=(ICS_FILENAME, content_type("REQUEST"), ics),
    )
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Bokad: session 2 fredag 20 mars kl. 14:00"
    assert parsed["Message-ID"] == "<delivery-7@samtal.se>"
    assert parsed["Content-Language"] == "sv"
    body = parsed.get_body(("plain",))
    assert body is not None and "Session 2 är bokad." in body.get_content()
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_filename() == ICS_FILENAME
    event = icalendar.Calendar.from_ical(attachment.get_content()).walk("VEVENT")[0]
    assert str(event["UID"]) == f"session-{session_id}@samtal"
    assert event.decoded("DTSTART") == START


def test_an_email_without_attachment_is_plain_text() -> None:
    msg = compose_email(
        sender="no-reply@samtal.se",
        to="ann@example.se",
        subject="Hur mår du nu?",
        body="Hej",
        language="sv",
        message_id="<delivery-8@samtal.se>",
    )
    assert msg.get_content_type() == "text/plain"


def test_long_swedish_subjects_and_bodies_travel_intact() -> None:
    subject = "Påminnelse: om en timme, torsdag 3 december kl. 16:16 – " + "å ä ö " * 12
    msg = compose_email(
        sender="Samtal <no-reply@samtal.se>",
        to="ann@example.se",
        subject=subject,
        body="Hej Åsa!\n\nVälkommen.",
        language="sv",
        message_id="<delivery-9@samtal.se>",
    )
    raw = msg.as_bytes()
    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == subject
    assert parsed["Message-ID"] == "<delivery-9@samtal.se>"
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content() == "Hej Åsa!\n\nVälkommen."


def test_errors_shown_to_operators_hide_the_address() -> None:
    assert _scrub("550 ann@example.se: no such user", "ann@example.se") == (
        "550 <recipient>: no such user"
    )
