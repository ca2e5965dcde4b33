"""Notifications' use cases for the HTTP api: a person's contacts and inbox, an operator's
view of failed deliveries and their re-sending. Each takes a connection, returns domain
values or rows, and raises the chassis' domain errors (`api.py` maps them to answers).

The event side (messages planned per event) is `handlers.py`; sending is `sender.py`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from chassis import audit, outbox, retention, rights
from chassis.auth import Principal
from chassis.errors import Conflict, NotFound
from contracts import Envelope, EventPayload
from contracts.events import (
    RIGHTS_REQUEST_HANDLED,
    IntakeEscalated,
    IntakeTriaged,
    RightsRequested,
)
from notifications import store
from notifications.domain.contacts import ContactSettings
from notifications.domain.delivery import Delivery, InvalidTransition, resend
from notifications.domain.export import one_document
from notifications.domain.plan import NotificationPlan, RecipientRole, plan_rights_notice
from notifications.export_parts import EXPIRED, FetchParts


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
    await _audit_clients_read(conn, who, rows, "failed_deliveries")
    return rows


async def _audit_clients_read(
    conn: asyncpg.Connection, who: Principal, rows: list[Any], resource: str
) -> None:
    """One audit entry per client among the rows' recipients: an operator read which
    messages of theirs failed (what kind of message a client got is health data)."""
    for client_id in {r["recipient_id"] for r in rows if r["recipient_role"] == "client"}:
        await audit.record(
            conn,
            actor_id=who.id,
            actor_role=who.role,
            subject_id=client_id,
            action="read",
            resource=resource,
        )


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


async def failed_messages(conn: asyncpg.Connection, who: Principal, limit: int) -> list[Any]:
    """Messages no template could render (set aside by the sender), newest first; audited
    per client, as failed deliveries are. Call inside a transaction."""
    rows = await store.failed_messages(conn, limit)
    await _audit_clients_read(conn, who, rows, "failed_messages")
    return rows


async def render_again(conn: asyncpg.Connection, message_id: uuid.UUID) -> None:
    """Give a message set aside as failed back to the sender (once its template is fixed:
    it is rendered anew, in the language its recipient has then) and wake the sender. Call
    inside a transaction."""
    state = await store.schedule_again(conn, message_id)
    if state is None:
        raise NotFound("No such message")
    if state != "failed":
        raise Conflict(
            f"Only a message that could not be rendered can be rendered again; this one is {state}",
            code="not_failed",
        )
    await store.wake_sender(conn)


# --------------------------------------------------------------------------- patient rights
# A person's rights over their data (GDPR art. 15, 17, 20) across the platform.
# A request (export or erasure) is taken here: notifications does its own part at once
# (its export part; or erasing contacts, channel choices and messages), and announces
# `RightsRequested` (ids and the kind only). Catalog, matching and booking do theirs
# (chassis.rights) and answer; when all have, the request is done and the person gets a
# notice in the inbox: the export is ready (also by e-mail when they have an address), or
# what was erased and what is kept and why (in-app only: their contacts are erased). A
# request should be done by `due_at` (DUE_AFTER); a repeated request while one runs is that
# same request.

RightsKind = Literal["export", "erasure"]
# Every service that holds a person's data besides this one, and so must answer.
ANSWERING = frozenset(RIGHTS_REQUEST_HANDLED)
ERASED = ["contacts", "channel_preferences", "messages"]
KEPT = ["access_log"]
DUE_AFTER = timedelta(hours=24)
# Delivered messages stay in the inbox this long, then the retention job deletes them.
MESSAGES_KEPT_FOR = timedelta(days=365)


async def request_rights(
    conn: asyncpg.Connection, person_id: uuid.UUID, role: RecipientRole, kind: RightsKind
) -> tuple[asyncpg.Record, bool]:
    """The person's request of this kind: the running one, or a new one started now;
    (row, created)."""
    now = datetime.now(UTC)
    row, created = await store.open_rights_request(
        conn, uuid.uuid4(), person_id, role, kind, now + DUE_AFTER
    )
    if not created:
        return row, False
    requested = RightsRequested(request_id=row["request_id"], subject_id=person_id, kind=kind)
    if kind == "export":
        data = await store.personal_data(conn, person_id)
        messages = len(data["messages"])
        document = rights.export_document(
            "notifications",
            person_id,
            data,
            [
                "Meddelanden: kontaktuppgifter,"
                f" {rights.counted(messages, 'meddelande', 'meddelanden')}, åtkomstloggen"
            ],
            [
                "Notifications: contact details,"
                f" {rights.counted(messages, 'message', 'messages')}, the access log"
            ],
        )
        await rights.save_export_part(conn, row["request_id"], person_id, document)
    else:
        await store.erase_person(conn, person_id, now)
    await audit.record(
        conn,
        actor_id=str(person_id),
        actor_role=role,
        subject_id=person_id,
        action=kind,
        resource="personal_data",
        resource_id=str(row["request_id"]),
    )
    await outbox.add(conn, requested)
    return row, True


async def access_log(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Any]:
    """The person's one access log across services, newest first, after `before`."""
    return list(await store.access_log(conn, person_id, limit, before))


async def rights_request(conn: asyncpg.Connection, request_id: uuid.UUID) -> Any:
    return await store.rights_request(conn, request_id)


async def rights_answered(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
    """A service did its part; when all have, the request is done and the person told."""
    answer = event.payload
    row = await store.rights_request(conn, answer.request_id, for_update=True)
    if row is None or row["status"] == "done":
        return  # not ours, or already told
    await store.record_rights_answer(
        conn,
        answer.request_id,
        event.producer,
        {"exported": answer.exported, "erased": answer.erased, "kept": answer.kept},
    )
    row = await store.rights_request(conn, answer.request_id)
    assert row is not None
    answers: dict[str, dict[str, list[str]]] = dict(row["answers"])
    if not ANSWERING <= set(answers):
        return
    await store.finish_rights_request(conn, answer.request_id)
    if row["kind"] == "erasure":
        answers["notifications"] = {"erased": ERASED, "kept": KEPT}
    else:
        answers["notifications"] = {"exported": ["contacts", "messages", "access_log"]}
    notice = plan_rights_notice(
        row["request_id"], row["subject_id"], row["requester_role"], row["kind"], answers
    )
    await store.save_plan(conn, event, NotificationPlan(messages=[notice]))


async def one_export(
    pool: asyncpg.Pool, request_id: uuid.UUID, who: Principal, fetch_parts: FetchParts
) -> dict[str, Any]:
    """The person's finished export as one document: the other services' parts (fetched
    with the person's own token: each service checks and audits the read) with this one's,
    and a summary of the whole in sv/en. Somebody else's, or one not done, is not found."""
    async with pool.acquire() as conn:
        row = await store.rights_request(conn, request_id)
    if (
        row is None
        or row["subject_id"] != who.subject
        or row["kind"] != "export"
        or row["status"] != "done"
    ):
        raise NotFound("No such export (yet): it is ready when the inbox says so")
    # No connection held while other services answer.
    parts = await fetch_parts(sorted(ANSWERING))
    async with pool.acquire() as conn, conn.transaction():
        own = await rights.export_part(conn, request_id, who.subject)
        if own is None:
            raise NotFound(EXPIRED, code="export_expired")
        await audit.record(
            conn,
            actor_id=who.id,
            actor_role=who.role,
            subject_id=who.subject,
            action="read",
            resource="export",
            resource_id=str(request_id),
        )
    return one_document(
        request_id,
        who.subject,
        row["requested_at"],
        datetime.now(UTC),
        {**parts, "notifications": own},
    )


# How long an escalation is followed for the shifts that begin before its triage (an intake
# untriaged that long has paged operators for weeks).
ESCALATIONS_KEPT_FOR = timedelta(days=30)


async def follow_escalation(conn: asyncpg.Connection, event: Envelope[EventPayload]) -> None:
    """Keeps an escalation until its triage: the on-call watch alerts the clinicians whose
    shift begins meanwhile (`on_call.hand_over`)."""
    payload = event.payload
    if isinstance(payload, IntakeEscalated):
        document = event.model_dump(mode="json")
        await store.escalation_seen(conn, payload.intake_id, document, event.occurred_at)
    elif isinstance(payload, IntakeTriaged):
        await store.escalation_triaged(conn, payload.intake_id, event.occurred_at)


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The retention job's part here: delivered messages and reminder changes after a year,
    export parts after 30 days, the access log and finished requests ten years on."""
    done = await store.purge_expired(
        conn, now - MESSAGES_KEPT_FOR, now - retention.CLINICAL_RETENTION
    )
    done["export_parts"] = await rights.purge_export_parts(conn, now)
    done["escalations"] = await store.forget_escalations(conn, now - ESCALATIONS_KEPT_FOR)
    return done
