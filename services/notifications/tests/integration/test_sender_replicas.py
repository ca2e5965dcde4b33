"""Several senders at once, and a sender that dies mid-send: real Postgres, real SMTP.

- Three senders share a backlog: every e-mail goes out exactly once.
- A crisis e-mail whose sender dies while sending it is sent again by another sender
  within 15 s (its claim is a short lease that only a living sender renews).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from chassis import db
from chassis.testing.events import a_submitted_intake
from contracts import Envelope
from contracts.events import IntakeEscalated
from notifications import store
from notifications.app import DEFINITION, Settings
from notifications.channels import EmailChannel, SmsChannel
from notifications.domain.contacts import ContactSettings
from notifications.domain.plan import plan
from notifications.sender import Sender


async def handle(pool: Any, envelope: Envelope[Any], settings: Settings) -> int:
    """What the event handler does, in its own transaction."""
    async with pool.acquire() as conn, conn.transaction():
        return await store.save_plan(conn, envelope, plan(envelope, settings.on_call_roster))


submitted = a_submitted_intake


async def people(pool: Any, tag: str, n: int) -> dict[uuid.UUID, str]:
    mail = {uuid.uuid4(): f"r{i}-{tag}@example.se" for i in range(n)}
    async with pool.acquire() as conn:
        for person, address in mail.items():
            await store.save_contacts(conn, ContactSettings(person_id=person, email=address))
    return mail


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_three_senders_send_each_email_exactly_once(
    migrated, mail_server, channel_settings, eventually
) -> None:
    settings = await migrated(
        DEFINITION, **channel_settings, sender_batch_size=7, sender_concurrency=4
    )
    pool = await db.create_pool(settings)
    mail = await people(pool, uuid.uuid4().hex[:8], 60)
    mail_server.delay = 0.01
    async with httpx.AsyncClient() as client:
        senders = [
            Sender(settings, pool, EmailChannel(settings), SmsChannel(settings, client))
            for _ in range(3)
        ]
        running = [asyncio.create_task(s.run()) for s in senders]
        try:
            for person in mail:
                await handle(pool, Envelope.wrap(submitted(person)), settings)
            addresses = set(mail.values())

            def arrived() -> list[str]:
                return [m.to[0] for m in list(mail_server.mails) if m.to[0] in addresses]

            await eventually(lambda: len(arrived()) >= len(addresses), what="the backlog")
            await asyncio.sleep(1.0)  # a double send would arrive meanwhile
        finally:
            await stop(*running)
    assert sorted(arrived()) == sorted(addresses)
    # All three took part, and each kept its SMTP connections for many messages.
    assert all(s.email.connections.opened >= 1 for s in senders)
    assert sum(s.email.connections.opened for s in senders) < len(addresses)
    await pool.close()


async def test_a_crisis_email_interrupted_by_a_crash_is_sent_again_within_15_s(
    migrated, mail_server, channel_settings, eventually
) -> None:
    clinician = uuid.uuid4()
    # The default lease (what production runs with), so the bound tested is the real one.
    settings = await migrated(DEFINITION, **channel_settings, on_call_clinicians=[clinician])
    assert settings.sender_lease_s <= 10
    pool = await db.create_pool(settings)
    tag = uuid.uuid4().hex[:8]
    mail = await people(pool, tag, 1)
    (in_crisis,) = mail
    async with pool.acquire() as conn:
        await store.save_contacts(
            conn, ContactSettings(person_id=clinician, email=f"oncall-{tag}@example.se")
        )
    crisis = {mail[in_crisis], f"oncall-{tag}@example.se"}
    mail_server.delay = 60  # the first sender's sends hang in DATA
    async with httpx.AsyncClient() as client:
        first = Sender(settings, pool, EmailChannel(settings), SmsChannel(settings, client))
        dying = asyncio.create_task(first.run())
        escalated = Envelope.wrap(
            IntakeEscalated(intake_id=uuid.uuid4(), client_id=in_crisis, severity_band="severe")
        )
        assert await handle(pool, escalated, settings) == 2

        async def claimed() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM deliveries d JOIN messages m ON m.id = d.message_id"
                " WHERE m.event_id = $1 AND d.claim = $2",
                escalated.event_id,
                first.claim,
            )
            return bool(n == 2)

        await eventually(claimed, what="the first sender claimed the crisis e-mails")
        await asyncio.sleep(0.5)  # both sends are under way in DATA
        # The crash: the task dies mid-send, nothing is recorded, its claims stay.
        dying.cancel()
        await asyncio.gather(dying, return_exceptions=True)
        crashed = time.monotonic()
        leases = await pool.fetch(
            "SELECT d.state, d.claim, d.due_at - now() AS left FROM deliveries d"
            " JOIN messages m ON m.id = d.message_id WHERE m.event_id = $1",
            escalated.event_id,
        )
        assert all(r["state"] == "pending" and r["claim"] == first.claim for r in leases)
        assert all(r["left"].total_seconds() <= settings.sender_lease_s for r in leases)
        assert mail_server.to(mail[in_crisis]) == []

        mail_server.delay = 0
        second = Sender(settings, pool, EmailChannel(settings), SmsChannel(settings, client))
        taking_over = asyncio.create_task(second.run())
        try:
            await eventually(
                lambda: crisis <= {m.to[0] for m in list(mail_server.mails)},
                timeout=15,
                what="the crisis e-mails sent again",
            )
            resent_after = time.monotonic() - crashed
        finally:
            await stop(taking_over)
    assert resent_after <= 15
    rows = await pool.fetch(
        "SELECT d.state, d.attempts FROM deliveries d JOIN messages m ON m.id = d.message_id"
        " WHERE m.event_id = $1",
        escalated.event_id,
    )
    # One attempt recorded each: the interrupted one left no trace but its lapsed claim.
    assert [(r["state"], r["attempts"]) for r in rows] == [("sent", 1), ("sent", 1)]
    print(f"crisis e-mails sent again {resent_after:.1f} s after the crash")
    await pool.close()
