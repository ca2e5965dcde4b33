"""HTTP routes: a person's own contacts and inbox; failed deliveries for operators.

Nobody reads another person's contacts or messages: there is no route taking a person
id, and a message id of somebody else answers 404. Admins receive no notifications,
so they have no contacts or inbox here; they see failed deliveries without their
text or address.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from chassis.app import pool_of
from chassis.auth import Principal, require
from chassis.http import SIGNED_IN, problems
from contracts.inputs import Offset, RowId
from notifications import service
from notifications.domain.contacts import ChannelPreferences, ContactDetails, ContactSettings
from notifications.domain.delivery import MessageState
from notifications.domain.words import DEFAULT_LANGUAGE, DEFAULT_TIME_ZONE

router = APIRouter()

Person = Annotated[Principal, Depends(require("client", "therapist", "clinician"))]
Admin = Annotated[Principal, Depends(require("admin"))]


# --------------------------------------------------------------------------- contacts


class ContactsOut(ContactDetails):
    # False until the person has saved their contacts: then they get in-app messages only.
    saved: bool
    updated_at: datetime | None = None


@router.get("/contacts/me", responses=problems(*SIGNED_IN), tags=["contacts"])
async def my_contacts(request: Request, who: Person) -> ContactsOut:
    """Your contact details and channel preferences (defaults when you have set none)."""
    async with pool_of(request).acquire() as conn:
        found = await service.contacts_of(conn, who.subject)
    if found is None:
        return ContactsOut.model_construct(
            email=None,
            phone=None,
            language=DEFAULT_LANGUAGE,
            time_zone=DEFAULT_TIME_ZONE,
            channels=ChannelPreferences.model_construct(email=False, sms=False, in_app=True),
            saved=False,
            updated_at=None,
        )
    contacts, updated_at = found
    return _out(contacts, updated_at)


@router.put("/contacts/me", responses=problems(*SIGNED_IN, 422), tags=["contacts"])
async def set_my_contacts(request: Request, body: ContactDetails, who: Person) -> ContactsOut:
    """Set your e-mail, phone, language and channels (the whole set; blank clears)."""
    contacts = ContactSettings(person_id=who.subject, **body.model_dump())
    async with pool_of(request).acquire() as conn:
        updated_at = await service.save_contacts(conn, contacts)
    return _out(contacts, updated_at)


def _out(c: ContactSettings, updated_at: datetime) -> ContactsOut:
    return ContactsOut.model_construct(
        **c.model_dump(exclude={"person_id", "channels"}),
        channels=c.channels,
        saved=True,
        updated_at=updated_at,
    )


# --------------------------------------------------------------------------- inbox


class InboxMessage(BaseModel):
    id: uuid.UUID
    kind: str  # the template: what the message is about, for a frontend's icon or link
    purpose: str
    urgent: bool
    subject: str
    body: str
    # Ids the message is about (session, course, intake, match, therapist), for links.
    refs: dict[str, str]
    received_at: datetime
    read_at: datetime | None


class Inbox(BaseModel):
    total: int
    unread: int
    messages: list[InboxMessage]


def _message(row: Any) -> InboxMessage:
    context: dict[str, Any] = row["context"]
    return InboxMessage(
        id=row["id"],
        kind=row["template"],
        purpose=row["purpose"],
        urgent=row["priority"] == "urgent",
        subject=row["subject"],
        body=row["body"],
        refs={k: str(v) for k, v in context.items() if k.endswith("_id") and v is not None},
        received_at=row["delivered_at"],
        read_at=row["read_at"],
    )


@router.get("/inbox", responses=problems(*SIGNED_IN, 422), tags=["inbox"])
async def my_inbox(
    request: Request,
    who: Person,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> Inbox:
    """Your messages, newest first, with how many are unread."""
    async with pool_of(request).acquire() as conn:
        page = await service.inbox(conn, who.subject, limit, offset)
    return Inbox(
        total=page.total, unread=page.unread, messages=[_message(r) for r in page.messages]
    )


@router.post("/inbox/{message_id}/read", responses=problems(*SIGNED_IN, 404, 422), tags=["inbox"])
async def read_message(request: Request, message_id: uuid.UUID, who: Person) -> InboxMessage:
    """Mark one of your messages read."""
    async with pool_of(request).acquire() as conn:
        return _message(await service.mark_read(conn, who.subject, message_id))


# --------------------------------------------------------------------------- operators


class Resent(BaseModel):
    id: int
    state: MessageState


class FailedDelivery(BaseModel):
    id: int
    message_id: uuid.UUID
    channel: str
    urgent: bool
    attempts: int
    error: str | None
    recipient_id: uuid.UUID
    recipient_role: str
    event_id: uuid.UUID
    event_type: str
    kind: str
    created_at: datetime
    failed_at: datetime


@router.get("/deliveries/failed", responses=problems(*SIGNED_IN, 422), tags=["operations"])
async def failed_deliveries(
    request: Request, who: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[FailedDelivery]:
    """Deliveries that still failed after their retries, newest first."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        rows = await service.failed_deliveries(conn, who, limit)
    return [
        FailedDelivery(
            id=r["id"],
            message_id=r["message_id"],
            channel=r["channel"],
            urgent=r["priority"] == "urgent",
            attempts=r["attempts"],
            error=r["last_error"],
            recipient_id=r["recipient_id"],
            recipient_role=r["recipient_role"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            kind=r["template"],
            created_at=r["created_at"],
            failed_at=r["failed_at"],
        )
        for r in rows
    ]


@router.post(
    "/deliveries/{delivery_id}/resend",
    status_code=202,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["operations"],
)
async def resend_delivery(request: Request, delivery_id: RowId, who: Admin) -> Resent:
    """Send a failed delivery again (its retries start over)."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        again = await service.resend_delivery(conn, delivery_id)
    return Resent(id=delivery_id, state=again.state)
