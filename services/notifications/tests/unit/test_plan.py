from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

from contracts import decode
from contracts.events import CourseStarted, SessionAttended, TherapistProfileWithdrawn
from notifications.domain.contacts import OnCallRoster, OnCallShift
from notifications.domain.plan import (
    FOLLOW_UP_AFTER,
    HANDLED_EVENTS,
    PlannedMessage,
    plan,
    plan_messages,
    plan_reminder_changes,
    reminder_has_lapsed,
    session_reminder_key,
)

T0 = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)


def shape(messages: list[PlannedMessage]) -> list[tuple[str, str, str, str]]:
    return sorted((m.recipient_role, m.template, m.purpose, m.priority) for m in messages)


def immediate(messages: list[PlannedMessage]) -> list[PlannedMessage]:
    return [m for m in messages if m.reminder_key is None]


# --------------------------------------------------------------------------- each event


def test_intake_submitted_sends_the_client_a_receipt(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.intake_submitted()), samples.roster)
    assert shape(messages) == [("client", "intake_received", "intake_receipt", "normal")]
    assert messages[0].recipient_id == samples.client_id


def test_escalation_is_urgent_for_client_and_every_on_call_clinician(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.intake_escalated()), samples.roster)
    assert shape(messages) == sorted(
        [("client", "crisis_information", "crisis_information", "urgent")]
        + [("clinician", "crisis_alert", "crisis_alert", "urgent")] * 2
    )
    # Crisis information to the client comes first.
    assert messages[0].recipient_id == samples.client_id
    assert {m.recipient_id for m in messages if m.recipient_role == "clinician"} == set(
        samples.clinician_ids
    )
    assert all(m.send_at is None for m in messages)


def test_escalation_alerts_only_the_clinician_whose_shift_it_is(samples: Any) -> None:
    on_duty = samples.clinician_ids[1]
    roster = OnCallRoster(
        clinician_ids=samples.clinician_ids,
        shifts=[OnCallShift(clinician_id=on_duty, starts_at=T0, ends_at=T0 + timedelta(hours=8))],
    )
    messages = plan_messages(samples.wrap(samples.intake_escalated(), at=T0), roster)
    assert [m.recipient_id for m in messages if m.recipient_role == "clinician"] == [on_duty]


def test_intake_triaged_tells_the_client(samples: Any) -> None:
    messages = plan_messages(
        samples.wrap(samples.intake_triaged("refer_elsewhere")), samples.roster
    )
    assert shape(messages) == [("client", "intake_triaged", "intake_triaged", "normal")]
    assert messages[0].context["decision"] == "refer_elsewhere"


def test_match_tells_client_who_and_why_and_therapist_of_a_new_client(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.therapist_matched()), samples.roster)
    assert shape(messages) == [
        ("client", "therapist_matched", "match_proposed", "normal"),
        ("therapist", "new_client", "new_client", "normal"),
    ]
    to_client = next(m for m in messages if m.recipient_role == "client")
    assert to_client.recipient_id == samples.client_id
    assert to_client.context["therapist_id"] == str(samples.therapist_id)
    assert [r["code"] for r in to_client.context["reasons"]] == [
        "speaks_language",
        "works_with_area",
        "first_free_time",
        "well_rated",
    ]
    to_therapist = next(m for m in messages if m.recipient_role == "therapist")
    assert to_therapist.recipient_id == samples.therapist_id


def test_a_match_awaiting_approval_is_not_disclosed_to_the_therapist(samples: Any) -> None:
    proposed = samples.therapist_matched(requires_approval=True, severity_band="severe")
    messages = plan_messages(samples.wrap(proposed), samples.roster)
    assert shape(messages) == [("client", "therapist_matched", "match_proposed", "normal")]
    assert all(m.recipient_id != samples.therapist_id for m in messages)


def test_waitlisted_tells_the_client(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.intake_waitlisted()), samples.roster)
    assert shape(messages) == [("client", "intake_waitlisted", "intake_waitlisted", "normal")]
    assert messages[0].context["reasons"] == ["no_language_match", "no_therapist_accepting"]


def test_match_approved_opens_booking_for_the_client(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.match_approved()), samples.roster)
    assert shape(messages) == [
        ("client", "match_approved", "match_approved", "normal"),
        ("therapist", "match_approved", "match_approved", "normal"),
    ]
    # The approval is the therapist's first notice of the client.
    to_therapist = next(m for m in messages if m.recipient_role == "therapist")
    assert to_therapist.recipient_id == samples.therapist_id
    assert to_therapist.context["client_id"] == str(samples.client_id)


def test_session_booked_both_with_calendar_and_reminders(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.session_booked()), samples.roster)
    assert shape(immediate(messages)) == [
        ("client", "session_booked", "session_booked", "normal"),
        ("therapist", "session_booked", "session_booked", "normal"),
    ]
    for m in immediate(messages):
        assert m.attachment is not None
        assert m.attachment.filename.endswith(".ics")
        assert m.attachment.content_type.startswith("text/calendar; method=REQUEST")
        assert icalendar.Calendar.from_ical(m.attachment.content)["METHOD"] == "REQUEST"
    reminders = [m for m in messages if m.reminder_key is not None]
    assert shape(reminders) == sorted(
        (role, "session_reminder", purpose, "normal")
        for role in ("client", "therapist")
        for purpose in ("reminder_24h", "reminder_1h")
    )


def test_session_cancelled_tells_both_with_a_cancelling_calendar(samples: Any) -> None:
    envelope = samples.wrap(samples.session_cancelled())
    messages = plan_messages(envelope, samples.roster)
    assert shape(messages) == [
        ("client", "session_cancelled", "session_cancelled", "normal"),
        ("therapist", "session_cancelled", "session_cancelled", "normal"),
    ]
    assert all(m.reminder_key is None for m in messages)
    for m in messages:
        assert m.attachment is not None
        cal = icalendar.Calendar.from_ical(m.attachment.content)
        assert cal["METHOD"] == "CANCEL"


def test_session_rescheduled_tells_both_and_replans_reminders(samples: Any) -> None:
    event = samples.session_rescheduled()
    messages = plan_messages(samples.wrap(event), samples.roster)
    assert shape(immediate(messages)) == [
        ("client", "session_rescheduled", "session_rescheduled", "normal"),
        ("therapist", "session_rescheduled", "session_rescheduled", "normal"),
    ]
    reminders = [m for m in messages if m.reminder_key is not None]
    assert {m.send_at for m in reminders} == {
        event.starts_at - timedelta(hours=24),
        event.starts_at - timedelta(hours=1),
    }


def test_course_completed_summary_review_and_follow_up(samples: Any) -> None:
    event = samples.course_completed()
    messages = plan_messages(samples.wrap(event), samples.roster)
    assert shape(messages) == [
        ("client", "course_completed", "course_summary", "normal"),
        ("client", "followup_questionnaire", "followup_questionnaire", "normal"),
        ("client", "review_invitation", "review_invitation", "normal"),
        ("therapist", "course_completed", "course_summary", "normal"),
    ]
    summary = next(
        m for m in messages if m.recipient_role == "client" and m.purpose == "course_summary"
    )
    assert summary.context["outcome"] == "response"
    follow_up = next(m for m in messages if m.template == "followup_questionnaire")
    assert follow_up.send_at == event.completed_at + FOLLOW_UP_AFTER
    review = next(m for m in messages if m.template == "review_invitation")
    assert review.send_at is None


def test_course_ended_tells_both(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.course_ended()), samples.roster)
    assert shape(messages) == [
        ("client", "course_ended", "course_ended", "normal"),
        ("therapist", "course_ended", "course_ended", "normal"),
    ]


def test_every_planned_recipient_is_a_participant(samples: Any) -> None:
    people = {
        "client": {samples.client_id},
        "therapist": {samples.therapist_id},
        "clinician": set(samples.clinician_ids),
    }
    for event in samples.every_event():
        for m in plan_messages(samples.wrap(event), samples.roster):
            assert m.recipient_id in people[m.recipient_role], (event.event_type, m.purpose)


def test_events_nobody_hears_about_plan_nothing(samples: Any) -> None:
    for payload in [
        TherapistProfileWithdrawn(therapist_id=samples.therapist_id, reason="left_platform"),
        CourseStarted(
            course_id=samples.course_id,
            match_id=samples.match_id,
            client_id=samples.client_id,
            therapist_id=samples.therapist_id,
            method="IPT",
            planned_sessions=12,
            session_minutes=50,
        ),
        SessionAttended(
            session_id=samples.session_id,
            course_id=samples.course_id,
            client_id=samples.client_id,
            therapist_id=samples.therapist_id,
            number=2,
            phase="initial",
            attendance="attended",
        ),
    ]:
        envelope = samples.wrap(payload)
        assert plan_messages(envelope, samples.roster) == []
        assert plan_reminder_changes(envelope) is None
        assert payload.event_type not in HANDLED_EVENTS


# --------------------------------------------------------------------------- dedup


def test_redelivered_event_plans_identical_messages(samples: Any) -> None:
    for event in samples.every_event():
        envelope = samples.wrap(event)
        redelivered = decode(envelope.to_bytes())  # as a consumer gets it the second time
        first = plan_messages(envelope, samples.roster)
        second = plan_messages(redelivered, samples.roster)
        assert first == second, event.event_type
        assert [m.dedup_key for m in first] == [m.dedup_key for m in second]


def test_dedup_keys_are_event_recipient_purpose_and_unique(samples: Any) -> None:
    for event in samples.every_event():
        envelope = samples.wrap(event)
        messages = plan_messages(envelope, samples.roster)
        keys = [m.dedup_key for m in messages]
        assert len(keys) == len(set(keys)), event.event_type
        for m in messages:
            assert m.dedup_key == f"{envelope.event_id}:{m.recipient_id}:{m.purpose}"


def test_a_new_event_with_the_same_payload_gets_new_keys(samples: Any) -> None:
    event = samples.session_booked()
    a = plan_messages(samples.wrap(event), samples.roster)
    b = plan_messages(samples.wrap(event), samples.roster)
    assert not {m.dedup_key for m in a} & {m.dedup_key for m in b}


# --------------------------------------------------------------------------- reminders


def reminders_of(messages: list[PlannedMessage]) -> dict[tuple[str, str], datetime | None]:
    return {(m.recipient_role, m.purpose): m.send_at for m in messages if m.reminder_key}


def test_reminders_24h_and_1h_before_start(samples: Any) -> None:
    start = T0 + timedelta(days=3)
    messages = plan_messages(samples.wrap(samples.session_booked(start), at=T0), samples.roster)
    assert reminders_of(messages) == {
        ("client", "reminder_24h"): start - timedelta(hours=24),
        ("client", "reminder_1h"): start - timedelta(hours=1),
        ("therapist", "reminder_24h"): start - timedelta(hours=24),
        ("therapist", "reminder_1h"): start - timedelta(hours=1),
    }
    key = session_reminder_key(samples.course_id, samples.session_id)
    assert {m.reminder_key for m in messages if m.send_at} == {key}
    reminder = next(m for m in messages if m.purpose == "reminder_1h")
    assert reminder.context["hours_before"] == 1
    assert reminder.attachment is None


def test_reminders_whose_time_has_passed_are_skipped(samples: Any) -> None:
    start = T0 + timedelta(hours=5)
    messages = plan_messages(samples.wrap(samples.session_booked(start), at=T0), samples.roster)
    assert set(reminders_of(messages)) == {("client", "reminder_1h"), ("therapist", "reminder_1h")}

    start = T0 + timedelta(minutes=59)
    messages = plan_messages(samples.wrap(samples.session_booked(start), at=T0), samples.roster)
    assert reminders_of(messages) == {}
    assert len(messages) == 2  # the confirmations still go


def test_reminder_exactly_at_planning_time_is_skipped(samples: Any) -> None:
    start = T0 + timedelta(hours=24)
    messages = plan_messages(samples.wrap(samples.session_booked(start), at=T0), samples.roster)
    assert set(reminders_of(messages)) == {("client", "reminder_1h"), ("therapist", "reminder_1h")}


def test_planning_time_can_be_given(samples: Any) -> None:
    start = T0 + timedelta(days=2)
    envelope = samples.wrap(samples.session_booked(start), at=T0)
    late = start - timedelta(hours=2)  # the event was consumed late
    assert set(reminders_of(plan_messages(envelope, samples.roster, now=late))) == {
        ("client", "reminder_1h"),
        ("therapist", "reminder_1h"),
    }


def test_cancellation_drops_the_sessions_reminders(samples: Any) -> None:
    booked = plan_messages(samples.wrap(samples.session_booked()), samples.roster)
    other_session = plan_messages(
        samples.wrap(samples.session_booked(session_id=uuid.uuid4())), samples.roster
    )
    cancel = samples.wrap(samples.session_cancelled())
    drop = plan_reminder_changes(cancel)
    assert drop is not None and drop.reason == "session_cancelled"
    pending = [m for m in booked + other_session if m.reminder_key]
    dropped = [m for m in pending if drop.drops(m.reminder_key, m.dedup_key)]
    assert len(dropped) == 4
    assert all(m in booked for m in dropped)
    # Confirmations (no reminder key) are never dropped.
    assert not any(drop.drops(m.reminder_key, m.dedup_key) for m in immediate(booked))


def test_reschedule_drops_old_reminders_and_keeps_its_own(samples: Any) -> None:
    old = plan_messages(samples.wrap(samples.session_booked(), at=T0), samples.roster)
    envelope = samples.wrap(samples.session_rescheduled(), at=T0 + timedelta(hours=1))
    result = plan(envelope, samples.roster)
    assert result.reminders is not None and result.reminders.reason == "session_rescheduled"
    new_reminders = [m for m in result.messages if m.reminder_key]
    assert len(new_reminders) == 4
    old_reminders = [m for m in old if m.reminder_key]
    assert all(result.reminders.drops(m.reminder_key, m.dedup_key) for m in old_reminders)
    # Applying the drop again after the new reminders were stored leaves them alone.
    assert not any(result.reminders.drops(m.reminder_key, m.dedup_key) for m in new_reminders)
    assert {m.reminder_key for m in new_reminders} == {m.reminder_key for m in old_reminders}


def test_reschedule_calendar_updates_the_same_entry(samples: Any) -> None:
    booked = plan_messages(samples.wrap(samples.session_booked(), at=T0), samples.roster)
    moved = plan_messages(
        samples.wrap(samples.session_rescheduled(), at=T0 + timedelta(hours=1)), samples.roster
    )
    moved_again = plan_messages(
        samples.wrap(samples.session_rescheduled(), at=T0 + timedelta(hours=2)), samples.roster
    )

    def vevent(messages: list[PlannedMessage]) -> Any:
        attachment = immediate(messages)[0].attachment
        assert attachment is not None
        return icalendar.Calendar.from_ical(attachment.content).walk("VEVENT")[0]

    first, second, third = vevent(booked), vevent(moved), vevent(moved_again)
    assert str(first["UID"]) == str(second["UID"]) == str(third["UID"])
    assert int(first["SEQUENCE"]) < int(second["SEQUENCE"]) < int(third["SEQUENCE"])
    assert second.decoded("DTSTART") == samples.session_rescheduled().starts_at


def test_course_ended_drops_reminders_of_every_session_in_the_course(samples: Any) -> None:
    mine = plan_messages(samples.wrap(samples.session_booked()), samples.roster)
    mine += plan_messages(
        samples.wrap(samples.session_booked(session_id=uuid.uuid4(), number=4)), samples.roster
    )
    other_course = plan_messages(
        samples.wrap(samples.session_booked(session_id=uuid.uuid4(), course_id=uuid.uuid4())),
        samples.roster,
    )
    drop = plan_reminder_changes(samples.wrap(samples.course_ended()))
    assert drop is not None
    assert sum(drop.drops(m.reminder_key, m.dedup_key) for m in mine) == 8
    assert not any(drop.drops(m.reminder_key, m.dedup_key) for m in other_course)


# --------------------------------------------------------------------------- privacy


def test_contexts_hold_only_ids_codes_and_times(samples: Any) -> None:
    for event in samples.every_event():
        for m in plan_messages(samples.wrap(event), samples.roster):
            json.dumps(m.context)  # storable as JSON
            assert not {"severity_band", "problem_areas", "risk_level", "score"} & set(m.context), (
                event.event_type,
                m.purpose,
            )
            for key, value in m.context.items():
                if isinstance(value, str) and key not in {"meeting_url", "practice_address"}:
                    assert len(value) <= 40, (key, value)


# --------------------------------------------------------------------------- additions


def test_escalation_without_a_roster_still_informs_the_client(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.intake_escalated()), None)
    assert shape(messages) == [("client", "crisis_information", "crisis_information", "urgent")]


def test_a_reminder_due_after_its_session_began_has_lapsed(samples: Any) -> None:
    start = T0 + timedelta(hours=3)
    reminder = next(
        m
        for m in plan_messages(samples.wrap(samples.session_booked(start)), samples.roster)
        if m.reminder_key
    )
    assert not reminder_has_lapsed(reminder.reminder_key, reminder.context, start - timedelta(1))
    assert reminder_has_lapsed(reminder.reminder_key, reminder.context, start)
    # A start that cannot be read is no reason to drop it (nor to fail the sender's round):
    # the render fails on it too, and sets it aside for operators.
    for unreadable in ("soon", None, 17):
        context = {**reminder.context, "starts_at": unreadable}
        assert not reminder_has_lapsed(reminder.reminder_key, context, start)
    # Messages that are not reminders never lapse.
    assert not reminder_has_lapsed(None, reminder.context, start + timedelta(days=1))


def test_reschedule_and_cancellation_carry_the_session_number_when_known(samples: Any) -> None:
    moved = plan_messages(samples.wrap(samples.session_rescheduled(number=5)), samples.roster)
    assert {m.context["number"] for m in moved} == {5}
    for messages in (
        moved,
        plan_messages(samples.wrap(samples.session_cancelled(number=5)), samples.roster),
    ):
        attachment = immediate(messages)[0].attachment
        assert attachment is not None
        event = icalendar.Calendar.from_ical(attachment.content).walk("VEVENT")[0]
        assert str(event["SUMMARY"]) == "Samtal: session 5"
