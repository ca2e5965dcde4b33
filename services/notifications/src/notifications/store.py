"""All SQL of the notifications service (asyncpg).

contacts          a person's own contact details and preferences
messages          one per event x recipient x purpose (dedup_key); the in-app inbox
deliveries        one per message x outside channel (e-mail, SMS), with retry state
reminder_changes  what cancellations/reschedules/ended courses did to reminders
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from contracts import Envelope
from notifications.domain.contacts import Channel, ChannelPreferences, ContactSettings, Priority
from notifications.domain.delivery import Delivery, MessageState
from notifications.domain.plan import NotificationPlan, PlannedMessage
from notifications.domain.render import RenderedMessage


def wake_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes the sender when messages are written."""
    return f"{schema}_messages_due"


async def wake_sender(conn: asyncpg.Connection) -> None:
    """Wake every sender once the caller's transaction commits (channel as wake_channel)."""
    await conn.execute("select pg_notify(current_schema() || '_messages_due', '')")


# --------------------------------------------------------------------------- contacts


def _contacts(row: asyncpg.Record) -> ContactSettings:
    # Validated when written; read back as stored (a later, stricter rule must not
    # make an old row unreadable at send time).
    return ContactSettings.model_construct(
        person_id=row["person_id"],
        email=row["email"],
        phone=row["phone"],
        language=row["language"],
        time_zone=row["time_zone"],
        channels=ChannelPreferences.model_construct(
            email=row["email_enabled"], sms=row["sms_enabled"], in_app=True
        ),
    )


async def contacts_of(
    conn: asyncpg.Connection, person_id: uuid.UUID
) -> tuple[ContactSettings, datetime] | None:
    row = await conn.fetchrow("SELECT * FROM contacts WHERE person_id = $1", person_id)
    return None if row is None else (_contacts(row), row["updated_at"])


async def contacts_of_people(
    conn: asyncpg.Connection, person_ids: list[uuid.UUID]
) -> dict[uuid.UUID, ContactSettings]:
    """The saved contacts of these people (those who saved none are left out)."""
    rows = await conn.fetch("SELECT * FROM contacts WHERE person_id = ANY($1::uuid[])", person_ids)
    return {row["person_id"]: _contacts(row) for row in rows}


async def save_contacts(conn: asyncpg.Connection, c: ContactSettings) -> datetime:
    updated_at: datetime = await conn.fetchval(
        "INSERT INTO contacts (person_id, email, phone, language, time_zone,"
        " email_enabled, sms_enabled) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (person_id) DO UPDATE SET email = $2, phone = $3, language = $4,"
        " time_zone = $5, email_enabled = $6, sms_enabled = $7, updated_at = now()"
        " RETURNING updated_at",
        c.person_id,
        c.email,
        c.phone,
        c.language,
        c.time_zone,
        c.channels.email,
        c.channels.sms,
    )
    return updated_at


# --------------------------------------------------------------------------- planning


def _prefixes(reminder_key: str) -> list[str]:
    """Every change prefix that covers this key: 'course:<c>:' and the key itself."""
    return [reminder_key[: i + 1] for i, ch in enumerate(reminder_key) if ch == ":"] + [
        reminder_key
    ]


async def save_plan(
    conn: asyncpg.Connection, envelope: Envelope[Any], plan: NotificationPlan
) -> int:
    """Store an event's messages (once per dedup_key) and apply its reminder changes.

    Events of one session travel on different topics, so they may arrive out of order:
    a change drops only reminders planned by *older* events, and reminders of an event
    older than a recorded change are not stored at all, nor its news of the session (its
    "booked" or "moved" message), nor an intake's "waitlisted" older than its match,
    approval or triage. The newest change wins.
    """
    occurred_at = envelope.occurred_at
    if plan.reminders is not None:
        await conn.execute(
            "INSERT INTO reminder_changes (key_prefix, event_id, occurred_at, reason)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            plan.reminders.key_prefix,
            plan.reminders.keep_event_id,
            occurred_at,
            plan.reminders.reason,
        )
        await conn.execute(
            "UPDATE messages SET state = 'dropped', note = $4"
            " WHERE state = 'scheduled' AND starts_with(reminder_key, $1)"
            " AND event_id <> $2 AND occurred_at <= $3",
            plan.reminders.key_prefix,
            plan.reminders.keep_event_id,
            occurred_at,
            plan.reminders.reason,
        )
    stored = 0
    for message in plan.messages:
        key = message.reminder_key or message.news_key
        if key is not None and await _superseded(conn, key, envelope):
            continue
        stored += await _insert_message(conn, envelope, message)
    if stored:
        await wake_sender(conn)
    return stored


async def _superseded(conn: asyncpg.Connection, reminder_key: str, envelope: Envelope[Any]) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM reminder_changes WHERE key_prefix = ANY($1::text[])"
            " AND occurred_at > $2 AND event_id <> $3)",
            _prefixes(reminder_key),
            envelope.occurred_at,
            envelope.event_id,
        )
    )


async def _insert_message(
    conn: asyncpg.Connection, envelope: Envelope[Any], m: PlannedMessage
) -> int:
    a = m.attachment
    status = await conn.execute(
        "INSERT INTO messages (id, dedup_key, event_id, event_type, occurred_at, recipient_id,"
        " recipient_role, template, purpose, priority, context, attachment_name,"
        " attachment_type, attachment, due_at, reminder_key)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
        " coalesce($15, now()), $16) ON CONFLICT (dedup_key) DO NOTHING",
        uuid.uuid4(),
        m.dedup_key,
        envelope.event_id,
        envelope.event_type,
        envelope.occurred_at,
        m.recipient_id,
        m.recipient_role,
        m.template,
        m.purpose,
        m.priority,
        m.context,
        a.filename if a else None,
        a.content_type if a else None,
        a.content if a else None,
        m.send_at,
        m.reminder_key,
    )
    return int(status.split()[-1])


async def scheduled_messages(
    conn: asyncpg.Connection, reminder_prefix: str
) -> list[asyncpg.Record]:
    """Reminders still waiting under a key prefix (for operators and tests)."""
    return list(
        await conn.fetch(
            "SELECT * FROM messages WHERE state = 'scheduled' AND starts_with(reminder_key, $1)"
            " ORDER BY due_at, recipient_role",
            reminder_prefix,
        )
    )


# --------------------------------------------------------------------------- delivering


async def seconds_to_next_due(conn: asyncpg.Connection) -> float | None:
    """How long until the next scheduled message or pending delivery is due (None: none)."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM least("
        " (SELECT min(due_at) FROM messages WHERE state = 'scheduled'),"
        " (SELECT min(due_at) FROM deliveries WHERE state = 'pending')) - now())"
    )
    return None if value is None else float(value)


# Per priority, written out (as _CLAIM below).
_LOCK_DUE = (
    "WITH due AS ("
    "  SELECT id FROM messages WHERE state = 'scheduled' AND priority = '{priority}'"
    "  AND due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " SELECT m.id, m.template, m.priority, m.context, m.reminder_key, m.due_at,"
    "  m.created_at, c.*"
    " FROM due JOIN messages m ON m.id = due.id"
    " LEFT JOIN contacts c ON c.person_id = m.recipient_id"
)
_LOCK_DUE_URGENT = _LOCK_DUE.format(priority="urgent")
_LOCK_DUE_NORMAL = _LOCK_DUE.format(priority="normal")


@dataclass(frozen=True)
class DueMessage:
    id: uuid.UUID
    template: str
    priority: Priority
    context: dict[str, Any]
    reminder_key: str | None
    contacts: ContactSettings | None


async def lock_due_messages(
    conn: asyncpg.Connection, limit: int, *, urgent_only: bool = False
) -> list[DueMessage]:
    """Due scheduled messages, urgent first, locked for this transaction (others skip them).

    Urgent ones by an index of their own, then the rest in due order: each part reads only
    the rows it takes, however long the backlog behind them."""
    rows = list(await conn.fetch(_LOCK_DUE_URGENT, limit))
    if not urgent_only and len(rows) < limit:
        rows += await conn.fetch(_LOCK_DUE_NORMAL, limit - len(rows))
    rows = sorted(rows, key=lambda r: (r["priority"] != "urgent", r["due_at"], r["created_at"]))
    return [
        DueMessage(
            id=row["id"],
            template=row["template"],
            priority=row["priority"],
            context=row["context"],
            reminder_key=row["reminder_key"],
            contacts=_contacts(row) if row["person_id"] is not None else None,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class DeliveredMessage:
    """A message rendered for its recipient, and the outside channels it goes by."""

    id: uuid.UUID
    language: str
    rendered: RenderedMessage
    channels: list[Channel]


async def deliver_messages(conn: asyncpg.Connection, delivered: list[DeliveredMessage]) -> None:
    """The messages are in their recipients' inboxes; their outside channels wait for the
    sender. Two statements for the whole batch."""
    if not delivered:
        return
    await conn.execute(
        "UPDATE messages m SET state = 'delivered', language = d.language, subject = d.subject,"
        " body = d.body, sms = d.sms, delivered_at = now()"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])"
        "  AS d(id, language, subject, body, sms) WHERE m.id = d.id",
        [d.id for d in delivered],
        [d.language for d in delivered],
        [d.rendered.subject for d in delivered],
        [d.rendered.body for d in delivered],
        [d.rendered.sms for d in delivered],
    )
    outside = [(d.id, c) for d in delivered for c in d.channels if c != "in_app"]
    if outside:
        await conn.execute(
            "INSERT INTO deliveries (message_id, channel, priority)"
            " SELECT m.id, o.channel, m.priority"
            " FROM unnest($1::uuid[], $2::text[]) AS o(message_id, channel)"
            " JOIN messages m ON m.id = o.message_id"
            " ON CONFLICT (message_id, channel) DO NOTHING",
            [message_id for message_id, _ in outside],
            [channel for _, channel in outside],
        )


async def set_message_aside(
    conn: asyncpg.Connection, message_id: uuid.UUID, state: str, note: str
) -> None:
    """`dropped` (no longer wanted) or `failed` (cannot be rendered), with why."""
    await conn.execute(
        "UPDATE messages SET state = $2, note = $3 WHERE id = $1", message_id, state, note[:500]
    )


# One statement per priority, the priority written out: a partial index serves a plan
# only for the value written in its predicate.
_CLAIM = (
    "WITH due AS ("
    "  SELECT id, message_id, due_at AS was_due FROM deliveries"
    "  WHERE state = 'pending' AND priority = '{priority}' AND due_at <= now()"
    "  ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " UPDATE deliveries d SET due_at = now() + make_interval(secs => $2), claim = $3,"
    "  updated_at = now()"
    " FROM due JOIN messages m ON m.id = due.message_id"
    "  LEFT JOIN contacts c ON c.person_id = m.recipient_id"
    " WHERE d.id = due.id"
    " RETURNING d.id, d.channel, d.priority, d.attempts, due.was_due, d.last_error,"
    "  m.language, m.subject, m.body, m.sms, m.attachment_name, m.attachment_type,"
    "  m.attachment, c.email, c.phone"
)
_CLAIM_URGENT = _CLAIM.format(priority="urgent")
_CLAIM_NORMAL = _CLAIM.format(priority="normal")


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    channel: str
    delivery: Delivery
    language: str
    subject: str
    body: str
    sms: str
    attachment: tuple[str, str, bytes] | None
    # The address as the person has it now (None: they removed it).
    address: str | None


async def claim_deliveries(
    conn: asyncpg.Connection,
    limit: int,
    lease_s: float,
    claim: uuid.UUID,
    *,
    urgent_only: bool = False,
) -> list[ClaimedDelivery]:
    """Claim due deliveries, urgent first: due_at moves a lease ahead, so another sender
    takes a delivery over only if this one stops renewing its claims (renew_claims) before
    recording the outcome. Urgent ones by an index of their own, then the rest in due
    order: each claim reads only the rows it takes, however long the backlog."""
    rows = list(await conn.fetch(_CLAIM_URGENT, limit, lease_s, claim))
    if not urgent_only and len(rows) < limit:
        rows += await conn.fetch(_CLAIM_NORMAL, limit - len(rows), lease_s, claim)
    claimed = [
        ClaimedDelivery(
            id=row["id"],
            channel=row["channel"],
            delivery=Delivery(
                state=MessageState.PENDING,
                priority=row["priority"],
                attempts=row["attempts"],
                due_at=row["was_due"],
                last_error=row["last_error"],
            ),
            language=row["language"],
            subject=row["subject"],
            body=row["body"],
            sms=row["sms"],
            attachment=(row["attachment_name"], row["attachment_type"], bytes(row["attachment"]))
            if row["attachment"] is not None
            else None,
            address=row["email"] if row["channel"] == "email" else row["phone"],
        )
        for row in rows
    ]
    # RETURNING keeps no order: urgent first, then the longest waiting.
    return sorted(claimed, key=lambda c: (c.delivery.priority != "urgent", c.delivery.due_at, c.id))


async def record_deliveries(
    conn: asyncpg.Connection, claim: uuid.UUID, outcomes: list[tuple[int, Delivery]]
) -> set[int]:
    """Write the outcomes of attempts in one statement; returns the ids recorded (a
    delivery whose claim was taken over meanwhile is left to its new sender)."""
    if not outcomes:
        return set()
    rows = await conn.fetch(
        "UPDATE deliveries d SET state = o.state, attempts = o.attempts, due_at = o.due_at,"
        " sent_at = o.sent_at, last_error = o.last_error, claim = NULL, updated_at = now()"
        " FROM unnest($2::bigint[], $3::text[], $4::int[], $5::timestamptz[],"
        "  $6::timestamptz[], $7::text[]) AS o(id, state, attempts, due_at, sent_at, last_error)"
        " WHERE d.id = o.id AND d.claim = $1 RETURNING d.id",
        claim,
        [i for i, _ in outcomes],
        [d.state.value for _, d in outcomes],
        [d.attempts for _, d in outcomes],
        [d.due_at for _, d in outcomes],
        [d.sent_at for _, d in outcomes],
        [d.last_error for _, d in outcomes],
    )
    return {row["id"] for row in rows}


async def renew_claims(
    conn: asyncpg.Connection, claim: uuid.UUID, ids: list[int], lease_s: float
) -> None:
    """This sender is alive and still sending these: their lease starts again."""
    await conn.execute(
        "UPDATE deliveries SET due_at = now() + make_interval(secs => $3)"
        " WHERE id = ANY($2::bigint[]) AND claim = $1 AND state = 'pending'",
        claim,
        ids,
        lease_s,
    )


async def release_claims(conn: asyncpg.Connection, claim: uuid.UUID, ids: list[int]) -> None:
    """Claimed but not sent (the sender is stopping): due again now, for any sender."""
    await conn.execute(
        "UPDATE deliveries SET due_at = now(), claim = NULL"
        " WHERE id = ANY($2::bigint[]) AND claim = $1 AND state = 'pending'",
        claim,
        ids,
    )


# --------------------------------------------------------------------------- inbox

INBOX_COLUMNS = "id, template, purpose, priority, subject, body, context, delivered_at, read_at"


async def inbox(
    conn: asyncpg.Connection, person_id: uuid.UUID, limit: int, offset: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {INBOX_COLUMNS} FROM messages WHERE recipient_id = $1 AND state = 'delivered'"
            " ORDER BY delivered_at DESC, id DESC LIMIT $2 OFFSET $3",
            person_id,
            limit,
            offset,
        )
    )


async def inbox_counts(conn: asyncpg.Connection, person_id: uuid.UUID) -> tuple[int, int]:
    """(messages, unread) in a person's inbox."""
    row = await conn.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE read_at IS NULL) AS unread"
        " FROM messages WHERE recipient_id = $1 AND state = 'delivered'",
        person_id,
    )
    return row["total"], row["unread"]


async def mark_read(
    conn: asyncpg.Connection, person_id: uuid.UUID, message_id: uuid.UUID
) -> asyncpg.Record | None:
    """Mark one of the person's own messages read (again: keeps the first time)."""
    return await conn.fetchrow(
        f"UPDATE messages SET read_at = coalesce(read_at, now())"
        f" WHERE id = $1 AND recipient_id = $2 AND state = 'delivered' RETURNING {INBOX_COLUMNS}",
        message_id,
        person_id,
    )


# --------------------------------------------------------------------------- operators


async def failed_deliveries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """What still failed after its retries, newest first: ids and codes, no message text
    and no address (operators need what and why, not the content)."""
    return list(
        await conn.fetch(
            "SELECT d.id, d.message_id, d.channel, d.priority, d.attempts, d.last_error,"
            " d.created_at, d.updated_at AS failed_at, m.recipient_id, m.recipient_role,"
            " m.event_id, m.event_type, m.template, m.purpose"
            " FROM deliveries d JOIN messages m ON m.id = d.message_id"
            " WHERE d.state = 'failed' ORDER BY d.updated_at DESC, d.id DESC LIMIT $1",
            limit,
        )
    )


async def failed_messages(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Messages set aside because no template could render them, newest first: ids, kind
    and why, not the message's context."""
    return list(
        await conn.fetch(
            "SELECT id, recipient_id, recipient_role, event_id, event_type, template, purpose,"
            " priority, note, due_at, created_at FROM messages WHERE state = 'failed'"
            " ORDER BY created_at DESC, id DESC LIMIT $1",
            limit,
        )
    )


async def schedule_again(conn: asyncpg.Connection, message_id: uuid.UUID) -> str | None:
    """A message set aside as failed goes back to the sender's queue (due at once: its due
    time has passed). Its state before (None: no such message); nothing changes unless it
    was `failed`."""
    state: str | None = await conn.fetchval(
        "WITH was AS (SELECT id, state FROM messages WHERE id = $1 FOR UPDATE),"
        " again AS (UPDATE messages m SET state = 'scheduled', note = NULL FROM was"
        "  WHERE m.id = was.id AND was.state = 'failed')"
        " SELECT state FROM was",
        message_id,
    )
    return state


async def lock_delivery(conn: asyncpg.Connection, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(
        "SELECT state, priority, attempts, due_at, sent_at, last_error FROM deliveries"
        " WHERE id = $1 FOR UPDATE",
        delivery_id,
    )
    if row is None:
        return None
    return Delivery(
        state=MessageState(row["state"]),
        priority=row["priority"],
        attempts=row["attempts"],
        due_at=row["due_at"],
        sent_at=row["sent_at"],
        last_error=row["last_error"],
    )


async def save_resend(conn: asyncpg.Connection, delivery_id: int, d: Delivery) -> None:
    """A re-sent delivery waits again (its last error stays until the next attempt)."""
    await conn.execute(
        "UPDATE deliveries SET state = $2, attempts = $3, due_at = $4, claim = NULL,"
        " updated_at = now() WHERE id = $1",
        delivery_id,
        d.state.value,
        d.attempts,
        d.due_at,
    )


# --------------------------------------------------------------------------- access log


async def record_access(conn: asyncpg.Connection, service: str, entry: Any) -> None:
    """Keep one AccessRecorded entry (an `_AccessRecorded` payload); a repeat is a no-op."""
    await conn.execute(
        "INSERT INTO access_log (entry_id, subject_id, service, actor_id, actor_role, action,"
        " resource, resource_id, reason_code, emergency, at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        entry.entry_id,
        entry.subject_id,
        service,
        entry.actor_id,
        entry.actor_role,
        entry.action,
        entry.resource,
        entry.resource_id,
        entry.reason_code,
        entry.emergency,
        entry.at,
    )


async def access_log(
    conn: asyncpg.Connection,
    subject_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[asyncpg.Record]:
    """The person's entries, newest first, after the `before` cursor (at, entry_id)."""
    rows: list[asyncpg.Record]
    if before is None:
        rows = await conn.fetch(
            "SELECT * FROM access_log WHERE subject_id = $1"
            " ORDER BY at DESC, entry_id DESC LIMIT $2",
            subject_id,
            limit,
        )
    else:
        rows = await conn.fetch(
            "SELECT * FROM access_log WHERE subject_id = $1 AND (at, entry_id) < ($2, $3)"
            " ORDER BY at DESC, entry_id DESC LIMIT $4",
            subject_id,
            before[0],
            before[1],
            limit,
        )
    return rows


async def open_rights_request(
    conn: asyncpg.Connection,
    request_id: uuid.UUID,
    subject_id: uuid.UUID,
    role: str,
    kind: str,
    due_at: datetime,
) -> tuple[asyncpg.Record, bool]:
    """The person's running request of this kind, or a new one; (row, created)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"rights:{subject_id}:{kind}")
    running = await conn.fetchrow(
        "SELECT * FROM rights_requests WHERE subject_id = $1 AND kind = $2 AND status = 'running'",
        subject_id,
        kind,
    )
    if running is not None:
        return running, False
    row = await conn.fetchrow(
        "INSERT INTO rights_requests (request_id, subject_id, requester_role, kind, due_at)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING *",
        request_id,
        subject_id,
        role,
        kind,
        due_at,
    )
    assert row is not None
    return row, True


async def rights_request(
    conn: asyncpg.Connection, request_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT * FROM rights_requests WHERE request_id = $1{lock}", request_id
    )


async def record_rights_answer(
    conn: asyncpg.Connection, request_id: uuid.UUID, service: str, answer: dict[str, list[str]]
) -> None:
    await conn.execute(
        "UPDATE rights_requests SET answers = answers || jsonb_build_object($2::text, $3::jsonb)"
        " WHERE request_id = $1",
        request_id,
        service,
        answer,
    )


async def finish_rights_request(conn: asyncpg.Connection, request_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE rights_requests SET status = 'done', done_at = now() WHERE request_id = $1",
        request_id,
    )


async def overdue_rights_requests(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    """Requests still running past their due time, the longest overdue first."""
    return list(
        await conn.fetch(
            "SELECT request_id, kind, due_at, answers FROM rights_requests"
            " WHERE status = 'running' AND due_at < $1 ORDER BY due_at",
            now,
        )
    )


async def personal_data(conn: asyncpg.Connection, person_id: uuid.UUID) -> dict[str, Any]:
    """Everything notifications holds about the person, for their export."""
    contacts = await conn.fetchrow("SELECT * FROM contacts WHERE person_id = $1", person_id)
    messages = await conn.fetch(
        "SELECT id, template, purpose, state, language, subject, body, due_at, delivered_at,"
        " read_at, created_at FROM messages WHERE recipient_id = $1 ORDER BY created_at",
        person_id,
    )
    log = await conn.fetch(
        "SELECT service, actor_id, actor_role, action, resource, resource_id, reason_code,"
        " emergency, at FROM access_log WHERE subject_id = $1 ORDER BY at",
        person_id,
    )
    return {
        "contacts": dict(contacts) if contacts else None,
        "messages": [dict(r) for r in messages],
        "access_log": [dict(r) for r in log],
    }


async def erase_person(conn: asyncpg.Connection, person_id: uuid.UUID, at: datetime) -> None:
    """Erase contacts, channel choices and every message to the person, and remember the
    erasure so that events from before it (still in flight) plan nothing for them."""
    await conn.execute("DELETE FROM contacts WHERE person_id = $1", person_id)
    # An export made before holds copies of what goes now.
    await conn.execute("DELETE FROM export_parts WHERE subject_id = $1", person_id)
    # Their messages locked first: a sender delivering one now commits its deliveries
    # before this goes on (the deletes below then see them), and no sender takes one after.
    await conn.execute("SELECT id FROM messages WHERE recipient_id = $1 FOR UPDATE", person_id)
    await conn.execute(
        "DELETE FROM deliveries WHERE message_id IN"
        " (SELECT id FROM messages WHERE recipient_id = $1)",
        person_id,
    )
    await conn.execute("DELETE FROM messages WHERE recipient_id = $1", person_id)
    await conn.execute(
        "INSERT INTO erasures (subject_id, erased_at) VALUES ($1, $2)"
        " ON CONFLICT (subject_id) DO UPDATE SET erased_at = EXCLUDED.erased_at",
        person_id,
        at,
    )


async def erased_before(
    conn: asyncpg.Connection, person_ids: Sequence[uuid.UUID], occurred_at: datetime
) -> set[uuid.UUID]:
    """Of these people, those who asked for erasure after `occurred_at`."""
    rows = await conn.fetch(
        "SELECT subject_id FROM erasures WHERE subject_id = ANY($1::uuid[]) AND erased_at >= $2",
        list(person_ids),
        occurred_at,
    )
    return {r["subject_id"] for r in rows}


async def purge_expired(
    conn: asyncpg.Connection, messages_before: datetime, clinical_before: datetime
) -> dict[str, int]:
    """Delivered, dropped or failed messages past their retention, and the reminder changes
    as old (a session is booked weeks ahead: a change a year old covers sessions long past);
    access log entries and finished requests past the clinical retention."""

    def count(status: str) -> int:
        return int(status.split()[-1])

    old = (
        "SELECT id FROM messages WHERE state IN ('delivered', 'dropped', 'failed')"
        " AND coalesce(delivered_at, created_at) < $1"
    )
    await conn.execute(f"DELETE FROM deliveries WHERE message_id IN ({old})", messages_before)
    return {
        "messages": count(
            await conn.execute(f"DELETE FROM messages WHERE id IN ({old})", messages_before)
        ),
        "reminder_changes": count(
            await conn.execute(
                "DELETE FROM reminder_changes WHERE occurred_at < $1", messages_before
            )
        ),
        "access_log": count(
            await conn.execute("DELETE FROM access_log WHERE at < $1", clinical_before)
        ),
        "rights_requests": count(
            await conn.execute(
                "DELETE FROM rights_requests WHERE status = 'done' AND done_at < $1",
                clinical_before,
            )
        ),
    }


# --------------------------------------------------------------------------- escalations


async def escalation_seen(
    conn: asyncpg.Connection, intake_id: uuid.UUID, envelope: dict[str, Any], at: datetime
) -> None:
    """An intake was escalated (the event as it came): kept until its triage."""
    await conn.execute(
        "INSERT INTO escalations (intake_id, envelope, escalated_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (intake_id) DO UPDATE SET envelope = EXCLUDED.envelope,"
        " escalated_at = EXCLUDED.escalated_at WHERE escalations.triaged_at IS NULL",
        intake_id,
        envelope,
        at,
    )


async def escalation_triaged(conn: asyncpg.Connection, intake_id: uuid.UUID, at: datetime) -> None:
    """The intake was triaged: its event goes (the severity band is health data), the row
    stays closed for the retention time (its escalation may not have come yet)."""
    await conn.execute(
        "INSERT INTO escalations (intake_id, triaged_at) VALUES ($1, $2)"
        " ON CONFLICT (intake_id) DO UPDATE SET triaged_at = EXCLUDED.triaged_at,"
        " envelope = NULL",
        intake_id,
        at,
    )


async def escalations_awaiting_triage(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """In the caller's transaction: the escalation events of intakes not triaged yet, oldest
    first, each locked (another replica's watch passes over those it holds)."""
    rows = await conn.fetch(
        "SELECT envelope FROM escalations WHERE triaged_at IS NULL AND envelope IS NOT NULL"
        " ORDER BY escalated_at FOR UPDATE SKIP LOCKED"
    )
    return [row["envelope"] for row in rows]


async def forget_escalations(conn: asyncpg.Connection, before: datetime) -> int:
    status = await conn.execute("DELETE FROM escalations WHERE created_at < $1", before)
    return int(status.split()[-1])
