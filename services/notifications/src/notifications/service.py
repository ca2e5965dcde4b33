"""Notifications' use cases for the HTTP api: a person's contacts and inbox, an operator's
view of failed deliveries and their re-sending. Each takes a connection, returns domain
values or rows, and raises the chassis' domain errors (`api.py` maps them to answers).

The event side (messages planned per event) is `handlers.py`; sending is `sender.py`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from chassis import audit
from chassis.auth import Principal
from chassis.errors import Conflict, NotFound
from notifications import store
from notifications.domain.contacts import ContactSettings
from notifications.domain.delivery import Delivery, InvalidTransition, resend


async def contacts_of(
    conn: asyncpg.Connection, person_id: uuid.UUID
) -> tuple[ContactSettings, datetime] | None:
    """The person's saved contacts and when they were saved; None before they saved any."""
    return await store.contacts_of(conn, person_id)


async def save_contacts(conn: asyncpg.Connection, contacts: ContactSettings) -> datetime:
    """Replace the person's contacts (the whole set); returns when they were saved."""
    saved_at: datetime = await store.save_contacts(conn, contacts)
    return saved_at


@dataclass(frozen=True)
class InboxPage:
    total: int
    unread: int
    messages: list[Any]  # message rows, newest first


async def inbox(
    conn: asyncpg.Connection, person_id: uuid.UUID, limit: int, offset: int
) -> InboxPage:
    rows = await store.inbox(conn, person_id, limit, offset)
    total, unread = await store.inbox_counts(conn, person_id)
    return InboxPage(total=total, unread=unread, messages=list(rows))


async def mark_read(conn: asyncpg.Connection, person_id: uuid.UUID, message_id: uuid.UUID) -> Any:
    """Mark one of the person's own messages read; somebody else's is not found."""
    row = await store.mark_read(conn, person_id, message_id)
    if row is None:
        raise NotFound("No such message in your inbox")
    return row


async def failed_deliveries(conn: asyncpg.Connection, who: Principal, limit: int) -> list[Any]:
    """Deliveries that still failed after their retries, newest first. Which client got which
    kind of message (e.g. crisis information) is health data: the look is audited per client.
    Call inside a transaction."""
    rows = list(await store.failed_deliveries(conn, limit))
    for client_id in {r["recipient_id"] for r in rows if r["recipient_role"] == "client"}:
        await audit.record(
            conn,
            actor_id=who.id,
            actor_role=who.role,
            subject_id=client_id,
            action="read",
            resource="failed_deliveries",
        )
    return rows


async def resend_delivery(conn: asyncpg.Connection, delivery_id: int) -> Delivery:
    """Send a failed delivery again (its retries start over) and wake the sender. Call inside
    a transaction."""
    current = await store.lock_delivery(conn, delivery_id)
    if current is None:
        raise NotFound("No such delivery")
    try:
        again = resend(current, datetime.now(UTC))
    except InvalidTransition as exc:
        raise Conflict(
            f"Only a failed delivery can be re-sent; this one is {current.state.value}",
            code="not_failed",
        ) from exc
    await store.save_resend(conn, delivery_id, again)
    await store.wake_sender(conn)
    return again
