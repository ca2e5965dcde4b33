"""Which messages an event becomes (docs/domain.md, Notifications). Pure: no I/O, no clock.

`plan_messages(envelope, roster)` maps one event to the messages to send, and
`plan_reminder_changes(envelope)` says which already planned reminders to drop
(cancellation, reschedule). `plan(...)` gives both.

Rules:
- Every message has `dedup_key = f"{event_id}:{recipient_id}:{purpose}"`: the same
  event delivered twice plans the same keys, and the store keeps one per key.
- Crisis first: IntakeEscalated plans crisis information to the client and an
  alert to every on-call clinician, all `urgent`; urgent messages come first in
  the plan and are sent ahead of anything queued (`delivery.dispatch_order`).
- Reminders go 24 h and 1 h before a session to client and therapist, with
  `send_at` and `reminder_key` tied to the course and session; a reminder whose
  time has passed at planning time is not planned.
- Planning time is `now`, by default the event's `occurred_at`, so a plan is a
  function of the event alone (a redelivery plans exactly the same).
- Contexts hold ids, codes, flags and ISO times only; no names, no contact
  details, no health facts beyond what the event carries. Message texts leave
  the severity band and problem areas out altogether (they stay in the app).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.envelope import Envelope, EventPayload
from contracts.events import (
    CourseCompleted,
    CourseEnded,
    IntakeEscalated,
    IntakeSubmitted,
    IntakeTriaged,
    IntakeWaitlisted,
    MatchApproved,
    SessionBooked,
    SessionCancelled,
    SessionRescheduled,
    TherapistMatched,
)
from notifications.domain.calendar import (
    ICS_FILENAME,
    CalendarMethod,
    content_type,
    sequence_for,
    session_calendar,
)
from notifications.domain.contacts import OnCallRoster, Priority
from notifications.domain.words import parse_time

RecipientRole = Literal["client", "therapist", "clinician"]

# Named rules.
REMINDERS_BEFORE: tuple[tuple[str, timedelta], ...] = (
    ("reminder_24h", timedelta(hours=24)),
    ("reminder_1h", timedelta(hours=1)),
)
# The follow-up questionnaire is sent some weeks after the last session, when it
# says something about lasting effect (the final PHQ-9 was just recorded).
FOLLOW_UP_AFTER = timedelta(weeks=4)

_PRIORITY_RANK: dict[str, int] = {"urgent": 0, "normal": 1}


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True)

    filename: str
    content_type: str
    content: bytes


class PlannedMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipient_id: uuid.UUID
    recipient_role: RecipientRole
    template: str
    purpose: str
    priority: Priority = "normal"
    context: dict[str, Any] = Field(default_factory=dict)
    attachment: Attachment | None = None
    dedup_key: str
    # None: send now. Set for reminders and other messages due later (UTC).
    send_at: AwareDatetime | None = None
    # Reminders only: "course:<id>:session:<id>", what a ReminderPlan drops by.
    reminder_key: str | None = None
    # News of where a session or an intake stands: its key (a session's as its reminders';
    # `intake_news_key`). Not stored once a later change of it is recorded (the older event
    # consumed after it: events of one session or intake travel on different topics):
    # "booked for 10:00" must not follow "cancelled", nor "waitlisted" follow "matched" or
    # "triaged" (an intake's other news stays: each is true of its moment).
    news_key: str | None = None


class ReminderPlan(BaseModel):
    """Drop the pending reminders whose `reminder_key` starts with `key_prefix`.

    Reminders planned by `keep_event_id` itself (a reschedule's new reminders)
    are kept, so applying the plan again after a redelivery is harmless.
    """

    model_config = ConfigDict(frozen=True)

    key_prefix: str
    keep_event_id: uuid.UUID
    reason: Literal["session_cancelled", "session_rescheduled", "course_ended", "intake_moved_on"]

    def drops(self, reminder_key: str | None, dedup_key: str) -> bool:
        if reminder_key is None or not reminder_key.startswith(self.key_prefix):
            return False
        return not dedup_key.startswith(f"{self.keep_event_id}:")


class NotificationPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: list[PlannedMessage]
    reminders: ReminderPlan | None = None


def dedup_key(event_id: uuid.UUID, recipient_id: uuid.UUID, purpose: str) -> str:
    return f"{event_id}:{recipient_id}:{purpose}"


def course_reminder_prefix(course_id: uuid.UUID) -> str:
    return f"course:{course_id}:"


def session_reminder_key(course_id: uuid.UUID, session_id: uuid.UUID) -> str:
    return f"{course_reminder_prefix(course_id)}session:{session_id}"


def intake_news_key(intake_id: uuid.UUID) -> str:
    return f"intake:{intake_id}"


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class _Planner:
    def __init__(self, envelope: Envelope[Any], now: datetime) -> None:
        self.event_id = envelope.event_id
        self.occurred_at = envelope.occurred_at
        self.now = now
        self.messages: list[PlannedMessage] = []

    def add(
        self,
        recipient_id: uuid.UUID,
        role: RecipientRole,
        template: str,
        context: dict[str, Any],
        *,
        purpose: str | None = None,
        priority: Priority = "normal",
        attachment: Attachment | None = None,
        send_at: datetime | None = None,
        reminder_key: str | None = None,
        news_key: str | None = None,
    ) -> None:
        purpose = purpose or template
        self.messages.append(
            PlannedMessage(
                recipient_id=recipient_id,
                recipient_role=role,
                template=template,
                purpose=purpose,
                priority=priority,
                context=context,
                attachment=attachment,
                dedup_key=dedup_key(self.event_id, recipient_id, purpose),
                send_at=send_at,
                reminder_key=reminder_key,
                news_key=news_key,
            )
        )

    def both(
        self,
        client_id: uuid.UUID,
        therapist_id: uuid.UUID,
        template: str,
        context: dict[str, Any],
        attachment: Attachment | None = None,
        news_key: str | None = None,
    ) -> None:
        for recipient, role in _both_people(client_id, therapist_id):
            self.add(
                recipient,
                role,
                template,
                {**context, "role": role},
                attachment=attachment,
                news_key=news_key,
            )

    def reminders(
        self,
        *,
        client_id: uuid.UUID,
        therapist_id: uuid.UUID,
        course_id: uuid.UUID,
        session_id: uuid.UUID,
        starts_at: datetime,
        context: dict[str, Any],
    ) -> None:
        key = session_reminder_key(course_id, session_id)
        for purpose, before in REMINDERS_BEFORE:
            send_at = starts_at - before
            if send_at <= self.now:
                continue  # its time has passed: no late reminder
            hours = int(before.total_seconds() // 3600)
            for recipient, role in _both_people(client_id, therapist_id):
                self.add(
                    recipient,
                    role,
                    "session_reminder",
                    {**context, "role": role, "hours_before": hours},
                    purpose=purpose,
                    send_at=send_at,
                    reminder_key=key,
                )


def _both_people(
    client_id: uuid.UUID, therapist_id: uuid.UUID
) -> tuple[tuple[uuid.UUID, RecipientRole], ...]:
    return ((client_id, "client"), (therapist_id, "therapist"))


def _ics(
    *,
    session_id: uuid.UUID,
    starts_at: datetime,
    ends_at: datetime | None,
    stamp: datetime,
    sequence: int,
    method: CalendarMethod,
    number: int | None = None,
    meeting_url: str | None = None,
    practice_address: str | None = None,
) -> Attachment:
    return Attachment(
        filename=ICS_FILENAME,
        content_type=content_type(method),
        content=session_calendar(
            session_id=session_id,
            starts_at=starts_at,
            ends_at=ends_at,
            stamp=stamp,
            sequence=sequence,
            method=method,
            number=number,
            meeting_url=meeting_url,
            practice_address=practice_address,
        ),
    )


# --------------------------------------------------------------------------- per event


def _intake_submitted(p: _Planner, e: IntakeSubmitted, roster: OnCallRoster | None) -> None:
    p.add(
        e.client_id,
        "client",
        "intake_received",
        {
            "intake_id": str(e.intake_id),
            "direct_choice": e.direct_therapist_id is not None,
            "requires_approval": e.requires_approval,
        },
        purpose="intake_receipt",
    )


def _intake_escalated(p: _Planner, e: IntakeEscalated, roster: OnCallRoster | None) -> None:
    p.add(
        e.client_id,
        "client",
        "crisis_information",
        {"intake_id": str(e.intake_id)},
        priority="urgent",
    )
    # No roster configured: the client still gets the crisis information (the worker
    # logs the missing roster loudly at start).
    for clinician_id in roster.on_call(p.now) if roster else []:
        p.add(
            clinician_id,
            "clinician",
            "crisis_alert",
            {
                "intake_id": str(e.intake_id),
                "client_id": str(e.client_id),
                "flagged_at": _iso(p.occurred_at),
            },
            priority="urgent",
        )


def _intake_triaged(p: _Planner, e: IntakeTriaged, roster: OnCallRoster | None) -> None:
    p.add(
        e.client_id,
        "client",
        "intake_triaged",
        {"intake_id": str(e.intake_id), "decision": e.decision},
    )


def _therapist_matched(p: _Planner, e: TherapistMatched, roster: OnCallRoster | None) -> None:
    p.add(
        e.client_id,
        "client",
        "therapist_matched",
        {
            "match_id": str(e.match_id),
            "intake_id": str(e.intake_id),
            "therapist_id": str(e.therapist_id),
            "mode": e.mode,
            "reasons": [r.model_dump() for r in e.reasons],
            "relaxed": list(e.relaxed),
            "alternatives_count": len(e.alternatives),
            "requires_approval": e.requires_approval,
            "switched": e.previous_therapist_id is not None,
        },
        purpose="match_proposed",
    )
    if e.requires_approval:
        # No premature disclosure: the therapist hears of the client only once a clinician
        # has approved the match (MatchApproved); a rejected proposal never reaches them.
        return
    p.add(
        e.therapist_id,
        "therapist",
        "new_client",
        {
            "match_id": str(e.match_id),
            "client_id": str(e.client_id),
            "method": e.method,
            "mode": e.mode,
            "requires_approval": False,
        },
    )


def _intake_waitlisted(p: _Planner, e: IntakeWaitlisted, roster: OnCallRoster | None) -> None:
    p.add(
        e.client_id,
        "client",
        "intake_waitlisted",
        {"intake_id": str(e.intake_id), "reasons": list(e.reasons)},
        news_key=intake_news_key(e.intake_id),
    )


def _match_approved(p: _Planner, e: MatchApproved, roster: OnCallRoster | None) -> None:
    context = {
        "match_id": str(e.match_id),
        "client_id": str(e.client_id),
        "therapist_id": str(e.therapist_id),
    }
    p.add(e.client_id, "client", "match_approved", {**context, "role": "client"})
    # The first the therapist hears of this client: nothing was said at the proposal.
    p.add(e.therapist_id, "therapist", "match_approved", {**context, "role": "therapist"})


def _session_context(e: SessionBooked | SessionRescheduled, number: int | None) -> dict[str, Any]:
    return {
        "session_id": str(e.session_id),
        "course_id": str(e.course_id),
        "number": number,
        "starts_at": _iso(e.starts_at),
        "ends_at": _iso(e.ends_at),
        "mode": e.mode,
        "meeting_url": e.meeting_url,
        "practice_address": e.practice_address,
    }


def _session_booked(p: _Planner, e: SessionBooked, roster: OnCallRoster | None) -> None:
    context = _session_context(e, e.number)
    ics = _ics(
        session_id=e.session_id,
        starts_at=e.starts_at,
        ends_at=e.ends_at,
        stamp=p.occurred_at,
        sequence=0,
        method="REQUEST",
        number=e.number,
        meeting_url=e.meeting_url,
        practice_address=e.practice_address,
    )
    p.both(
        e.client_id,
        e.therapist_id,
        "session_booked",
        {**context, "booked_by": e.booked_by},
        ics,
        news_key=session_reminder_key(e.course_id, e.session_id),
    )
    p.reminders(
        client_id=e.client_id,
        therapist_id=e.therapist_id,
        course_id=e.course_id,
        session_id=e.session_id,
        starts_at=e.starts_at,
        context=context,
    )


def _session_cancelled(p: _Planner, e: SessionCancelled, roster: OnCallRoster | None) -> None:
    ics = _ics(
        session_id=e.session_id,
        starts_at=e.starts_at,
        ends_at=e.ends_at,
        stamp=p.occurred_at,
        sequence=sequence_for(p.occurred_at),
        method="CANCEL",
        number=e.number,
    )
    context = {
        "session_id": str(e.session_id),
        "course_id": str(e.course_id),
        "starts_at": _iso(e.starts_at),
        "cancelled_by": e.cancelled_by,
        "late": e.late,
        "counts_as_used": e.counts_as_used,
    }
    p.both(e.client_id, e.therapist_id, "session_cancelled", context, ics)


def _session_rescheduled(p: _Planner, e: SessionRescheduled, roster: OnCallRoster | None) -> None:
    # The session number is optional on SessionRescheduled (added later to the contract):
    # without it the calendar summary and texts say "session" without one.
    context = _session_context(e, e.number)
    ics = _ics(
        session_id=e.session_id,
        starts_at=e.starts_at,
        ends_at=e.ends_at,
        stamp=p.occurred_at,
        sequence=sequence_for(p.occurred_at),
        method="REQUEST",
        number=e.number,
        meeting_url=e.meeting_url,
        practice_address=e.practice_address,
    )
    p.both(
        e.client_id,
        e.therapist_id,
        "session_rescheduled",
        {
            **context,
            "previous_starts_at": _iso(e.previous_starts_at),
            "rescheduled_by": e.rescheduled_by,
            "late": e.late,
            "counts_as_used": e.counts_as_used,
        },
        ics,
        news_key=session_reminder_key(e.course_id, e.session_id),
    )
    p.reminders(
        client_id=e.client_id,
        therapist_id=e.therapist_id,
        course_id=e.course_id,
        session_id=e.session_id,
        starts_at=e.starts_at,
        context=context,
    )


def _course_completed(p: _Planner, e: CourseCompleted, roster: OnCallRoster | None) -> None:
    context = {
        "course_id": str(e.course_id),
        "client_id": str(e.client_id),
        "therapist_id": str(e.therapist_id),
        "method": e.method,
        "sessions_held": e.sessions_held,
        "outcome": e.outcome,
    }
    p.add(
        e.client_id,
        "client",
        "course_completed",
        {**context, "role": "client"},
        purpose="course_summary",
    )
    p.add(
        e.client_id,
        "client",
        "review_invitation",
        {"course_id": str(e.course_id), "therapist_id": str(e.therapist_id)},
    )
    p.add(
        e.client_id,
        "client",
        "followup_questionnaire",
        {"course_id": str(e.course_id), "completed_at": _iso(e.completed_at)},
        send_at=e.completed_at + FOLLOW_UP_AFTER,
    )
    p.add(
        e.therapist_id,
        "therapist",
        "course_completed",
        {**context, "role": "therapist"},
        purpose="course_summary",
    )


def _course_ended(p: _Planner, e: CourseEnded, roster: OnCallRoster | None) -> None:
    p.both(
        e.client_id,
        e.therapist_id,
        "course_ended",
        {
            "course_id": str(e.course_id),
            "reason": e.reason,
            "ended_by": e.ended_by,
            "sessions_held": e.sessions_held,
        },
    )


_RULES: dict[type[EventPayload], Callable[[_Planner, Any, OnCallRoster | None], None]] = {
    IntakeSubmitted: _intake_submitted,
    IntakeEscalated: _intake_escalated,
    IntakeTriaged: _intake_triaged,
    TherapistMatched: _therapist_matched,
    IntakeWaitlisted: _intake_waitlisted,
    MatchApproved: _match_approved,
    SessionBooked: _session_booked,
    SessionCancelled: _session_cancelled,
    SessionRescheduled: _session_rescheduled,
    CourseCompleted: _course_completed,
    CourseEnded: _course_ended,
}
HANDLED_EVENTS: frozenset[str] = frozenset(t.event_type for t in _RULES)


def plan_messages(
    envelope: Envelope[Any], roster: OnCallRoster | None, now: datetime | None = None
) -> list[PlannedMessage]:
    """The messages an event becomes, urgent first; [] for events nobody hears about."""
    rule = _RULES.get(type(envelope.payload))
    if rule is None:
        return []
    planner = _Planner(envelope, now or envelope.occurred_at)
    rule(planner, envelope.payload, roster)
    return sorted(planner.messages, key=lambda m: _PRIORITY_RANK[m.priority])


def plan_reminder_changes(envelope: Envelope[Any]) -> ReminderPlan | None:
    """Which pending reminders this event drops (before its own messages are stored), and
    the change it records: older news of the same session or intake is not stored after it."""
    e = envelope.payload
    if isinstance(e, SessionCancelled | SessionRescheduled):
        return ReminderPlan(
            key_prefix=session_reminder_key(e.course_id, e.session_id),
            keep_event_id=envelope.event_id,
            reason="session_cancelled"
            if isinstance(e, SessionCancelled)
            else "session_rescheduled",
        )
    if isinstance(e, CourseEnded):
        return ReminderPlan(
            key_prefix=course_reminder_prefix(e.course_id),
            keep_event_id=envelope.event_id,
            reason="course_ended",
        )
    if isinstance(e, IntakeTriaged | TherapistMatched | IntakeWaitlisted | MatchApproved):
        # No reminder has the key: recorded so that an older "waitlisted" is not stored.
        return ReminderPlan(
            key_prefix=intake_news_key(e.intake_id),
            keep_event_id=envelope.event_id,
            reason="intake_moved_on",
        )
    return None


def plan(
    envelope: Envelope[Any], roster: OnCallRoster | None, now: datetime | None = None
) -> NotificationPlan:
    return NotificationPlan(
        messages=plan_messages(envelope, roster, now),
        reminders=plan_reminder_changes(envelope),
    )


def reminder_has_lapsed(reminder_key: str | None, context: dict[str, Any], now: datetime) -> bool:
    """A reminder that comes due only once its session has begun is not sent (it would
    arrive after the fact, e.g. when the booking event was consumed very late)."""
    if reminder_key is None or "starts_at" not in context:
        return False
    try:
        starts_at = parse_time(context["starts_at"])
    except (TypeError, ValueError):  # unreadable: not lapsed; rendering it sets it aside
        return False
    return starts_at <= now


# --------------------------------------------------------------------------- patient rights

RIGHTS_TEMPLATES = {"export": "rights_export_ready", "erasure": "rights_erasure_done"}


def plan_rights_notice(
    request_id: uuid.UUID,
    subject_id: uuid.UUID,
    role: RecipientRole,
    kind: Literal["export", "erasure"],
    answers: dict[str, dict[str, list[str]]],
) -> PlannedMessage:
    """The person's notice that their export is ready, or what was erased and what is kept.
    One per request (its dedup key is the request's), on every channel they have."""
    erased = sorted({c for a in answers.values() for c in a.get("erased", [])})
    kept = sorted({c for a in answers.values() for c in a.get("kept", [])})
    template = RIGHTS_TEMPLATES[kind]
    return PlannedMessage(
        recipient_id=subject_id,
        recipient_role=role,
        template=template,
        purpose=template,
        context={
            "request_id": str(request_id),
            "kind": kind,
            "services": sorted(answers),
            "erased": erased,
            "kept": kept,
        },
        dedup_key=dedup_key(request_id, subject_id, template),
    )
