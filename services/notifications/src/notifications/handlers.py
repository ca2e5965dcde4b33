"""Event handlers: every event a person should hear about becomes planned messages.

One consumer (inbox name) per event type in domain.plan.HANDLED_EVENTS, on two Kafka
consumer groups: `crisis` (IntakeEscalated) and `messages` (the rest), so a backlog or
a retrying message elsewhere never holds up a crisis. Each stores the
event's messages, and drops or moves reminders, in the transaction of its inbox row;
the messages' dedup keys keep one message per event, recipient and purpose even if
the inbox were bypassed (a replay under another consumer name). The sender is woken
on commit (NOTIFY), so a crisis message goes out at once.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from faststream import Context

from chassis.consumer import EventConsumers
from contracts import REGISTRY, Envelope, EventPayload
from contracts.events import ACCESS_RECORDED, RIGHTS_REQUEST_HANDLED, IntakeEscalated
from notifications import service, store
from notifications.domain.plan import HANDLED_EVENTS, plan
from notifications.settings import Settings

consumers = EventConsumers("notifications")


async def store_messages(
    event: Envelope[EventPayload],
    conn: asyncpg.Connection,
    settings: Annotated[Settings, Context()],
) -> None:
    """Plans its messages to client, therapist or on-call clinician, and its reminders."""
    planned = plan(event, settings.on_call_roster)
    # An event from before a person's erasure (still in flight when it came) plans nothing
    # for them: what was erased must not come back.
    erased = await store.erased_before(
        conn, [m.recipient_id for m in planned.messages], event.occurred_at
    )
    if erased:
        kept = [m for m in planned.messages if m.recipient_id not in erased]
        planned = planned.model_copy(update={"messages": kept})
    await store.save_plan(conn, event, planned)
    await service.follow_escalation(conn, event)


# Crisis first: escalations are consumed apart from everything else.
CRISIS_EVENTS = frozenset({IntakeEscalated.event_type})

for _event_type in sorted(HANDLED_EVENTS):
    _spec = REGISTRY.spec(_event_type)
    consumers.handler(
        _spec.model,
        name=f"{_spec.topic.split('.')[1]}-messages",  # e.g. session-booked-messages
        group="crisis" if _event_type in CRISIS_EVENTS else "messages",
    )(store_messages)


# The person's one access log: every service's audit entries (ids and codes only).
async def keep_access_entry(event: Envelope[EventPayload], conn: asyncpg.Connection) -> None:
    """Keeps a service's audit entry in the person's access log (GET /me/access-log)."""
    await store.record_access(conn, event.producer, event.payload)


# One handler for every service's entries: typed by what they share (EventPayload).
_ACCESS_MODELS: list[type[EventPayload]] = list(ACCESS_RECORDED.values())
for _model in _ACCESS_MODELS:
    consumers.handler(_model, name=f"{_model.producer}-access-log", group="access-log")(
        keep_access_entry
    )


async def rights_answered(event: Envelope[EventPayload], conn: asyncpg.Connection) -> None:
    """A service did its part of an export or erasure; the last one done tells the person."""
    await service.rights_answered(conn, event)


_ANSWER_MODELS: list[type[EventPayload]] = list(RIGHTS_REQUEST_HANDLED.values())
for _answer in _ANSWER_MODELS:
    consumers.handler(_answer, name=f"{_answer.producer}-rights-answers", group="rights")(
        rights_answered
    )
