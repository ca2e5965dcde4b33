"""The sender and the store against the real database and a real SMTP server, without
the broker: messages are written exactly as the event handlers write them."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import REGISTRY

from chassis import db
from chassis.testing.events import a_match, a_session_booked, a_submitted_intake
from contracts import Envelope
from contracts.events import (
    IntakeEscalated,
    IntakeWaitlisted,
    SessionBooked,
    SessionCancelled,
    SessionRescheduled,
)
from notifications import on_call, store
from notifications.app import DEFINITION, Settings
from notifications.channels import EmailChannel, SmsChannel
from notifications.domain.contacts import (
    ChannelPreferences,
    ContactSettings,
    OnCallRoster,
    OnCallShift,
)
from notifications.domain.plan import plan, session_reminder_key
from notifications.sender import Sender


async def handle(conn: Any, envelope: Envelope[Any], settings: Settings) -> int:
    """What the event handler does, in its own transaction."""
    async with conn.transaction():
        return await store.save_plan(conn, envelope, plan(envelope, settings.on_call_roster))


def booked(course: uuid.UUID, sid: uuid.UUID, start: datetime, client: uuid.UUID) -> Any:
    return a_session_booked(
        client,
        start,
        course_id=course,
        session_id=sid,
        mode="in_person",
        practice_address="Storgatan 1, Stockholm",
        booked_by="therapist",
    )


def moved(b: SessionBooked, start: datetime) -> SessionRescheduled:
    return SessionRescheduled(
        session_id=b.session_id,
        course_id=b.course_id,
        client_id=b.client_id,
        therapist_id=b.therapist_id,
        previous_starts_at=b.starts_at,
        starts_at=start,
        ends_at=start + timedelta(minutes=45),
        time_zone="Europe/Stockholm",
        mode="video",
        rescheduled_by="client",
        late=False,
        counts_as_used=False,
    )


def cancelled(b: SessionBooked) -> SessionCancelled:
    return SessionCancelled(
        session_id=b.session_id,
        course_id=b.course_id,
        client_id=b.client_id,
        therapist_id=b.therapist_id,
        starts_at=b.starts_at,
        cancelled_by="client",
        late=False,
        counts_as_used=False,
    )


async def test_reminder_changes_arriving_out_of_order_keep_the_newest(migrated) -> None:
    settings = await migrated(DEFINITION)
    pool = await db.create_pool(settings)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    start = t0 + timedelta(days=5)
    course = uuid.uuid4()
    x, y, z = (booked(course, uuid.uuid4(), start, uuid.uuid4()) for _ in range(3))

    async def scheduled(b: SessionBooked) -> set[datetime]:
        async with pool.acquire() as conn:
            rows = await store.scheduled_messages(
                conn, session_reminder_key(b.course_id, b.session_id)
            )
        return {r["due_at"] for r in rows}

    def reminder_times(at: datetime) -> set[datetime]:
        return {at - timedelta(hours=24), at - timedelta(hours=1)}

    def at(minutes: int, payload: Any) -> Envelope[Any]:
        return Envelope.wrap(payload, occurred_at=t0 + timedelta(minutes=minutes))

    async with pool.acquire() as conn:
        # x: the reschedule is consumed before the booking it moves.
        await handle(conn, at(2, moved(x, start + timedelta(days=1))), settings)
        await handle(conn, at(0, x), settings)
        assert await scheduled(x) == reminder_times(start + timedelta(days=1))
        # y: the cancellation is consumed before the booking.
        await handle(conn, at(2, cancelled(y)), settings)
        await handle(conn, at(0, y), settings)
        assert await scheduled(y) == set()
        # z: booked, then moved twice; the two moves arrive newest first.
        await handle(conn, at(0, z), settings)
        first, second = (
            at(1, moved(z, start + timedelta(days=1))),
            at(2, moved(z, start + timedelta(days=2))),
        )
        await handle(conn, second, settings)
        await handle(conn, first, settings)
        assert await scheduled(z) == reminder_times(start + timedelta(days=2))
        # A redelivery that slipped past the inbox (a replay) stores nothing new.
        assert await handle(conn, second, settings) == 0
        assert await scheduled(z) == reminder_times(start + timedelta(days=2))
        # x and z: two people x two reminders; y none; nothing else in the course.
        assert len(await store.scheduled_messages(conn, f"course:{course}:")) == 8
        # Nor the news of the older event consumed late: x was never "booked" for the first
        # time (it had moved), y never "booked" at all (cancelled); z's first move is old.
        news = await conn.fetch(
            "SELECT context->>'session_id' AS session, template FROM messages"
            " WHERE template IN ('session_booked', 'session_rescheduled')"
            " AND context->>'course_id' = $1",
            str(course),
        )
        told = sorted((r["session"], r["template"]) for r in news)
        assert told == sorted(
            [
                *[(str(x.session_id), "session_rescheduled")] * 2,
                *[(str(z.session_id), "session_booked")] * 2,
                *[(str(z.session_id), "session_rescheduled")] * 2,  # the second move only
            ]
        )
    await pool.close()


async def test_a_waitlisting_consumed_after_the_match_is_not_told(migrated) -> None:
    """IntakeWaitlisted and TherapistMatched travel on different topics: consumed after
    the match (a catch-up after an outage), "you are on the waitlist" came last and stayed
    newest in the client's inbox. In their order, both are told."""
    settings = await migrated(DEFINITION)
    pool = await db.create_pool(settings)
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    late, in_order = uuid.uuid4(), uuid.uuid4()

    def events(intake_id: uuid.UUID) -> tuple[Envelope[Any], Envelope[Any]]:
        client = uuid.uuid4()
        waitlisted = IntakeWaitlisted(
            intake_id=intake_id, client_id=client, reasons=["no_therapist_accepting"]
        )
        matched = a_match(client, uuid.uuid4(), intake_id=intake_id)
        return (
            Envelope.wrap(waitlisted, occurred_at=t0),
            Envelope.wrap(matched, occurred_at=t0 + timedelta(minutes=3)),
        )

    async def told(intake_id: uuid.UUID) -> list[str]:
        rows = await pool.fetch(
            "SELECT template FROM messages WHERE context->>'intake_id' = $1"
            " AND recipient_role = 'client' ORDER BY template",
            str(intake_id),
        )
        return [r["template"] for r in rows]

    try:
        async with pool.acquire() as conn:
            waitlisted, matched = events(late)
            await handle(conn, matched, settings)
            await handle(conn, waitlisted, settings)
            waitlisted, matched = events(in_order)
            await handle(conn, waitlisted, settings)
            await handle(conn, matched, settings)
        assert await told(late) == ["therapist_matched"]
        assert await told(in_order) == ["intake_waitlisted", "therapist_matched"]
    finally:
        await pool.close()


async def test_crisis_goes_ahead_of_the_queue_and_contacts_count_at_send_time(
    migrated, mail_server, channel_settings, eventually
) -> None:
    clinician = uuid.uuid4()
    settings = await migrated(
        DEFINITION,
        **channel_settings,
        on_call_clinicians=[clinician],
        sender_batch_size=4,
        sender_concurrency=2,
    )
    pool = await db.create_pool(settings)
    tag = uuid.uuid4().hex[:8]
    clients = [uuid.uuid4() for _ in range(12)]
    in_crisis, late_setter = uuid.uuid4(), uuid.uuid4()
    mail = {p: f"p{i}-{tag}@example.se" for i, p in enumerate([*clients, in_crisis, clinician])}
    mail[late_setter] = f"late-{tag}@example.se"
    queued = {mail[c] for c in clients}
    crisis = {mail[in_crisis], mail[clinician]}
    mail_server.delay = 0.15  # a slow mail server: the queue takes a while

    async with pool.acquire() as conn:
        for person in [*clients, in_crisis, clinician]:
            await store.save_contacts(conn, ContactSettings(person_id=person, email=mail[person]))
        for client in clients:
            await handle(conn, Envelope.wrap(receipt(client)), settings)
        # Somebody who has set no contacts yet, with a reminder due in a few seconds.
        start = datetime.now(UTC) + timedelta(hours=1, seconds=3)
        soon = booked(uuid.uuid4(), uuid.uuid4(), start, late_setter)
        await handle(conn, Envelope.wrap(soon), settings)

    async with httpx.AsyncClient() as client:
        sender = Sender(settings, pool, EmailChannel(settings), SmsChannel(settings, client))
        running = asyncio.create_task(sender.run())
        try:
            # The roster's size is exported (0 would page: a crisis alert would reach nobody).
            await eventually(
                lambda: REGISTRY.get_sample_value("samtal_on_call_clinicians") == 1,
                what="the on-call gauge",
            )
            # The queue is being sent when the crisis comes in.
            await eventually(lambda: len(arrived(mail_server, queued)) >= 2, what="queue started")
            written = time.monotonic()
            escalated = Envelope.wrap(
                IntakeEscalated(intake_id=uuid.uuid4(), client_id=in_crisis, severity_band="severe")
            )
            async with pool.acquire() as conn:
                assert await handle(conn, escalated, settings) == 2
                # The same event again stores nothing (dedup key), so nothing goes twice.
                assert await handle(conn, escalated, settings) == 0
                # Contacts set after the message was planned, before it is due: they count.
                await store.save_contacts(
                    conn,
                    ContactSettings(
                        person_id=late_setter,
                        email=mail[late_setter],
                        language="en",
                        channels=ChannelPreferences(email=True),
                    ),
                )
            await eventually(lambda: crisis <= set(arrived(mail_server, crisis)), what="crisis")
            crisis_latency = time.monotonic() - written
            await eventually(lambda: len(arrived(mail_server, queued)) == 12, what="the queue")
            await eventually(
                lambda: any(
                    s.startswith("Reminder") for s in mail_server.subjects(mail[late_setter])
                ),
                timeout=15,
                what="reminder",
            )
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    order = arrived(mail_server, queued | crisis)
    last_crisis = max(i for i, to in enumerate(order) if to in crisis)
    # Ahead of the queue: at most the sends already under way went before the crisis.
    assert last_crisis <= 2 + 4 + 1, order
    assert len(order) - last_crisis - 1 >= 6
    assert crisis_latency < 2.0
    # Exactly once each.
    assert sorted(order) == sorted(queued | crisis)
    # Planned before they set any contacts, sent by e-mail in the language they chose
    # later (the booking confirmation too, when it was still queued by then).
    late = mail_server.subjects(mail[late_setter])
    assert sum(s.startswith("Reminder: in one hour") for s in late) == 1, late
    assert all(s.startswith(("Reminder: in one hour", "Booked: session 1")) for s in late), late
    await pool.close()


async def test_a_crisis_is_sent_beside_the_sends_under_way_on_connections_kept_for_it(
    migrated, mail_server, channel_settings, eventually
) -> None:
    clinician = uuid.uuid4()
    settings = await migrated(
        DEFINITION,
        **channel_settings,
        on_call_clinicians=[clinician],
        sender_concurrency=1,
        sender_urgent_connections=2,
    )
    pool = await db.create_pool(settings)
    tag = uuid.uuid4().hex[:8]
    clients = [uuid.uuid4() for _ in range(6)]
    in_crisis = uuid.uuid4()
    mail = {p: f"u{i}-{tag}@example.se" for i, p in enumerate([*clients, in_crisis, clinician])}
    queued = {mail[c] for c in clients}
    crisis = {mail[in_crisis], mail[clinician]}
    mail_server.delay = 0.3  # each normal send is under way for a while
    async with pool.acquire() as conn:
        for person in [*clients, in_crisis, clinician]:
            await store.save_contacts(conn, ContactSettings(person_id=person, email=mail[person]))
        for client in clients:
            await handle(conn, Envelope.wrap(receipt(client)), settings)

    async with httpx.AsyncClient() as client:
        sender = Sender(settings, pool, EmailChannel(settings), SmsChannel(settings, client))
        running = asyncio.create_task(sender.run())
        try:
            await eventually(lambda: len(arrived(mail_server, queued)) >= 1, what="queue started")
            escalated = Envelope.wrap(
                IntakeEscalated(intake_id=uuid.uuid4(), client_id=in_crisis, severity_band="severe")
            )
            async with pool.acquire() as conn:
                assert await handle(conn, escalated, settings) == 2
            await eventually(lambda: crisis <= set(arrived(mail_server, crisis)), what="crisis")
            await eventually(lambda: len(arrived(mail_server, queued)) == 6, what="the queue")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    await pool.close()

    # The senders never had more than `sender_concurrency` normal messages under way ...
    assert all(len(together & queued) <= 1 for together in mail_server.under_way)
    # ... and the crisis went beside a normal send (one sender: the queue kept going), both
    # of its e-mails at once, each on a connection kept for urgent messages.
    assert any(together & queued and together & crisis for together in mail_server.under_way)
    assert any(crisis <= together for together in mail_server.under_way), mail_server.under_way
    assert sorted(arrived(mail_server, queued | crisis)) == sorted(queued | crisis)


receipt = a_submitted_intake


def arrived(mail_server: Any, addresses: set[str]) -> list[str]:
    """The addresses among `addresses` in order of arrival."""
    return [m.to[0] for m in list(mail_server.mails) if m.to[0] in addresses]


async def test_a_sender_whose_listening_connection_is_cut_listens_again(
    migrated, mail_server, channel_settings, eventually
) -> None:
    """A crisis is sent on the NOTIFY its messages wake the sender with; the poll (a minute
    here) is only the fallback. The connection the sender listens on cut while it sits idle
    (as by a Postgres restart): it hears that, listens again on another, and the next
    crisis still goes at once."""
    clinician, in_crisis = uuid.uuid4(), uuid.uuid4()
    settings = await migrated(
        DEFINITION, **channel_settings, on_call_clinicians=[clinician], sender_poll_s=60
    )
    pool = await db.create_pool(settings)
    tag = uuid.uuid4().hex[:8]
    mail = {in_crisis: f"crisis-{tag}@example.se", clinician: f"on-call-{tag}@example.se"}
    async with pool.acquire() as conn:
        for person, address in mail.items():
            await store.save_contacts(conn, ContactSettings(person_id=person, email=address))

    async def listening() -> set[int]:
        # The sender's listener: the only connection whose last statement is its LISTEN.
        found = await pool.fetchval(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name ="
            " 'notifications' AND state = 'idle' AND query LIKE 'LISTEN %'"
        )
        return set(found or ())

    async def listening_again(old: int) -> bool:
        return bool(await listening() - {old})

    async with httpx.AsyncClient() as client:
        sender = Sender(settings, pool, EmailChannel(settings), SmsChannel(settings, client))
        running = asyncio.create_task(sender.run())
        try:
            await eventually(listening, what="the sender listening")
            [cut] = await listening()
            assert await pool.fetchval("SELECT pg_terminate_backend($1)", cut)
            await eventually(
                lambda: listening_again(cut), timeout=15, what="the sender listening again"
            )
            escalated = IntakeEscalated(
                intake_id=uuid.uuid4(), client_id=in_crisis, severity_band="severe"
            )
            async with pool.acquire() as conn:
                assert await handle(conn, Envelope.wrap(escalated), settings) == 2
            crisis = set(mail.values())
            await eventually(
                lambda: set(arrived(mail_server, crisis)) == crisis, timeout=15, what="crisis"
            )
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await pool.close()


async def test_the_on_call_watch_counts_the_clinicians_a_crisis_alert_reaches_outside_the_app(
    migrated, channel_settings
) -> None:
    settings = await migrated(DEFINITION, **channel_settings)
    pool = await db.create_pool(settings)
    quiet, mobile, none_saved = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    try:
        async with pool.acquire() as conn:
            # Both chose no e-mail: an urgent alert goes to what they saved all the same.
            saved = {quiet: {"email": "quiet@example.se"}, mobile: {"phone": "070-123 45 67"}}
            for person, address in saved.items():
                no_email = ChannelPreferences(email=False)
                contacts = ContactSettings(person_id=person, channels=no_email, **address)
                await store.save_contacts(conn, contacts)
            everyone = OnCallRoster(clinician_ids=[quiet, mobile, none_saved])
            assert await on_call.check(conn, everyone, now, sms_available=True) == 2
            assert REGISTRY.get_sample_value("samtal_on_call_clinicians_reachable") == 2
            assert await on_call.check(conn, everyone, now, sms_available=False) == 1
            # Only the one who saved nothing is on shift now: an alert reaches nobody outside.
            shift = OnCallShift(
                clinician_id=none_saved,
                starts_at=now - timedelta(hours=1),
                ends_at=now + timedelta(hours=1),
            )
            on_shift = OnCallRoster(clinician_ids=[quiet, mobile, none_saved], shifts=[shift])
            assert await on_call.check(conn, on_shift, now, sms_available=True) == 0
            assert REGISTRY.get_sample_value("samtal_on_call_clinicians_reachable") == 0
            later = now + timedelta(hours=2)  # the shift is over: everyone again
            assert await on_call.check(conn, on_shift, later, sms_available=True) == 2
            assert await on_call.check(conn, None, now, sms_available=True) == 0
    finally:
        await pool.close()
