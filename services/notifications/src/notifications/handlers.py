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

from typing import Any, cast

import asyncpg

from chassis.consumer import EventConsumers
from contracts import REGISTRY, Envelope
from contracts.events import IntakeEscalated
from notifications import store
from notifications.domain.plan import HANDLED_EVENTS, plan
from notifications.settings import Settings

consumers = EventConsumers("notifications")


async def store_messages(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Plans its messages to client, therapist or on-call clinician, and its reminders."""
    settings = cast(Settings, consumers.settings)
    await store.save_plan(conn, event, plan(event, settings.on_call_roster))


# Crisis first: escalations are consumed apart from everything else.
CRISIS_EVENTS = frozenset({IntakeEscalated.event_type})

for _event_type in sorted(HANDLED_EVENTS):
    _spec = REGISTRY.spec(_event_type)
    consumers.handler(
        _spec.model,
        name=f"{_spec.topic.split('.')[1]}-messages",  # e.g. session-booked-messages
        group="crisis" if _event_type in CRISIS_EVENTS else "messages",
    )(store_messages)
