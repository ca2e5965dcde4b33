"""HTTP routes: a person's own contacts and inbox; failed deliveries for operators.

Nobody reads another person's contacts or messages: there is no route taking a person
id, and a message id of somebody else answers 404. Admins receive no notifications,
so they have no contacts or inbox here; they see failed deliveries without their
text or address.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from chassis import rights
from chassis.app import pool_of, runtime_of
from chassis.auth import Principal, require
from chassis.errors import DomainError, NotFound
from chassis.http import SIGNED_IN, problems
from contracts.inputs import Offset, RowId
from notifications import export_parts, service
from notifications.domain.contacts import ContactDetails, ContactSettings
from notifications.domain.delivery import MessageState
from notifications.domain.words import DEFAULT_LANGUAGE, DEFAULT_TIME_ZONE, Language
from notifications.settings import Settings

router = APIRouter()

Person = Annotated[Principal, Depends(require("client", "therapist", "clinician"))]
Admin = Annotated[Principal, Depends(require("admin"))]


# --------------------------------------------------------------------------- contacts


class ChannelsOut(BaseModel):
    email: bool
    sms: bool
    in_app: bool


class ContactsOut(BaseModel):
    """The contacts as stored. Not a `ContactDetails`: its rules are checked when they are
    saved, and a saved number may no longer pass them (the phone-number data that says
    what is a mobile changes with the library): shown, the person can fix it."""

    email: str | None
    phone: str | None
    language: Language  # (the table allows no other)
    time_zone: str
    channels: ChannelsOut
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
            channels=ChannelsOut(email=False, sms=False, in_app=True),
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
        channels=ChannelsOut(**c.channels.model_dump()),
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


class FailedMessage(BaseModel):
    """A message the sender set aside: no language's template could render it."""

    id: uuid.UUID
    recipient_id: uuid.UUID
    recipient_role: str
    event_id: uuid.UUID
    event_type: str
    kind: str
    purpose: str
    urgent: bool
    error: str | None
    due_at: datetime
    created_at: datetime


class RenderedAgain(BaseModel):
    id: uuid.UUID
    state: str


@router.get("/messages/failed", responses=problems(*SIGNED_IN, 422), tags=["operations"])
async def failed_messages(
    request: Request, who: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[FailedMessage]:
    """Messages no template could render (a template bug), newest first: render them again
    once the fix is deployed."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        rows = await service.failed_messages(conn, who, limit)
    return [
        FailedMessage(
            id=r["id"],
            recipient_id=r["recipient_id"],
            recipient_role=r["recipient_role"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            kind=r["template"],
            purpose=r["purpose"],
            urgent=r["priority"] == "urgent",
            error=r["note"],
            due_at=r["due_at"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


@router.post(
    "/messages/{message_id}/render-again",
    status_code=202,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["operations"],
)
async def render_message_again(
    request: Request, message_id: uuid.UUID, who: Admin
) -> RenderedAgain:
    """Give a message that could not be rendered back to the sender (after the fix)."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        await service.render_again(conn, message_id)
    return RenderedAgain(id=message_id, state="scheduled")


# --------------------------------------------------------------------------- access log


class AccessEntry(BaseModel):
    service: str
    actor_id: str
    actor_role: str
    action: str
    resource: str
    resource_id: str | None
    # Emergency access: a clinician without standing access opened the record, stating a
    # reason (the reason itself is in that service's own log).
    emergency: bool
    reason_code: str | None
    at: datetime


class AccessLog(BaseModel):
    entries: list[AccessEntry]
    # Pass as `cursor` for the next (older) page; None: no more.
    next_cursor: str | None


def _cursor_of(value: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, entry_id = value.rsplit("_", 1)
        return datetime.fromisoformat(at), uuid.UUID(entry_id)
    except ValueError as exc:
        raise DomainError("cursor: not a cursor this service gave", code="invalid_request") from exc


@router.get("/me/access-log", responses=problems(*SIGNED_IN, 422), tags=["privacy"])
async def my_access_log(
    request: Request,
    who: Person,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> AccessLog:
    """Who read or changed your health data in any service, and when: newest first, paged."""
    before = _cursor_of(cursor) if cursor else None
    async with pool_of(request).acquire() as conn:
        rows = await service.access_log(conn, who.subject, limit + 1, before)
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        AccessEntry(
            service=r["service"],
            actor_id=r["actor_id"],
            actor_role=r["actor_role"],
            action=r["action"],
            resource=r["resource"],
            resource_id=r["resource_id"],
            emergency=r["emergency"],
            reason_code=r["reason_code"],
            at=r["at"],
        )
        for r in rows
    ]
    last = rows[-1] if rows and more else None
    return AccessLog(
        entries=entries,
        next_cursor=f"{last['at'].isoformat()}_{last['entry_id']}" if last else None,
    )


# --------------------------------------------------------------------------- rights requests

SERVICES = ("catalog", "matching", "booking", "notifications")


class RightsRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["export", "erasure"]


class RightsRequestOut(BaseModel):
    request_id: uuid.UUID
    kind: Literal["export", "erasure"]
    status: Literal["running", "done"]
    requested_at: datetime
    due_at: datetime
    done_at: datetime | None
    # Which services have done their part, with what they exported, erased or keep (codes).
    answers: dict[str, dict[str, list[str]]]
    # Export, once done: the whole export as one document (through the gateway)...
    document: str | None
    # ...and where each service's own part is fetched on its own.
    parts: list[str]


def _request_out(row: Any) -> RightsRequestOut:
    answers = dict(row["answers"])
    done = row["status"] == "done"
    return RightsRequestOut(
        request_id=row["request_id"],
        kind=row["kind"],
        status=row["status"],
        requested_at=row["requested_at"],
        due_at=row["due_at"],
        done_at=row["done_at"],
        answers=answers,
        document=f"/api/notifications/me/rights-requests/{row['request_id']}/export"
        if done and row["kind"] == "export"
        else None,
        parts=[f"/api/{s}/me/exports/{row['request_id']}" for s in SERVICES]
        if done and row["kind"] == "export"
        else [],
    )


@router.post(
    "/me/rights-requests",
    status_code=202,
    responses={200: {"model": RightsRequestOut}, **problems(*SIGNED_IN, 422)},
    tags=["privacy"],
)
async def request_my_rights(
    request: Request, body: RightsRequestIn, who: Person, response: Response
) -> RightsRequestOut:
    """Ask for a copy of your data (export) or its erasure. Every service does its part; the
    inbox tells you when it is done. Asking again while one runs gives that same request."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        row, created = await service.request_rights(conn, who.subject, who.role, body.kind)  # type: ignore[arg-type]
    if not created:
        response.status_code = 200
    return _request_out(row)


@router.get(
    "/me/rights-requests/{request_id}",
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["privacy"],
)
async def my_rights_request(
    request: Request, request_id: uuid.UUID, who: Person
) -> RightsRequestOut:
    """Where your export or erasure stands; somebody else's answers 404."""
    async with pool_of(request).acquire() as conn:
        row = await service.rights_request(conn, request_id)
    if row is None or row["subject_id"] != who.subject:
        raise NotFound("No such request")
    return _request_out(row)


class ExportDocument(BaseModel):
    """A person's whole export: every service's part as JSON, and a summary in sv/en."""

    format: str
    request_id: uuid.UUID
    subject_id: uuid.UUID
    requested_at: datetime
    generated_at: datetime
    summary: rights.ExportSummary
    parts: dict[str, rights.ExportPart]


@router.get(
    "/me/rights-requests/{request_id}/export",
    response_model=ExportDocument,
    responses=problems(*SIGNED_IN, 404, 422, 503),
    tags=["privacy"],
)
async def my_export(
    request: Request, request_id: uuid.UUID, who: Person, response: Response
) -> dict[str, Any]:
    """Your data export (GDPR art. 15/20) as ONE JSON document: what every part of Samtal
    holds about you, and a summary in Swedish and English. Each part's read shows in your
    access log. Somebody else's export, or one not done yet, answers 404."""
    settings = cast(Settings, runtime_of(request).settings)
    passed_on = ("authorization", "x-request-id", "x-correlation-id")
    fetch = export_parts.fetcher(
        settings.export_parts_url,
        request_id,
        {h: request.headers[h] for h in passed_on if h in request.headers},
        settings.export_parts_timeout_s,
    )
    document = await service.one_export(pool_of(request), request_id, who, fetch)
    name = f"samtal-export-{str(request_id)[:8]}.json"
    response.headers["content-disposition"] = f'attachment; filename="{name}"'
    return document
