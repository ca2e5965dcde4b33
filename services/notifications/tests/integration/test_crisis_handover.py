"""A crisis alert goes to the clinicians on call when the intake is escalated, and, while it
awaits triage, to each clinician whose shift begins later (once each): the event handler and
the on-call watch's `hand_over` against the real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from chassis import db
from contracts import Envelope
from contracts.events import IntakeEscalated, IntakeTriaged
from notifications import handlers, on_call
from notifications.app import DEFINITION
from notifications.domain.contacts import OnCallRoster, OnCallShift


def shift(clinician: uuid.UUID, start: datetime, hours: int) -> OnCallShift:
    return OnCallShift(
        clinician_id=clinician, starts_at=start, ends_at=start + timedelta(hours=hours)
    )


async def alerted(pool: asyncpg.Pool, event: Envelope[IntakeEscalated]) -> list[uuid.UUID]:
    rows = await pool.fetch(
        "SELECT recipient_id FROM messages WHERE event_id = $1 AND template = 'crisis_alert'"
        " ORDER BY created_at, recipient_id",
        event.event_id,
    )
    return [row["recipient_id"] for row in rows]


async def test_a_shift_that_begins_before_the_triage_is_alerted_once(migrated) -> None:
    evening, night, morning = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t0 = datetime.now(UTC).replace(microsecond=0)
    roster = OnCallRoster(
        clinician_ids=[evening, night, morning],
        shifts=[
            shift(evening, t0 - timedelta(hours=1), 2),  # on call when it is escalated
            shift(night, t0 + timedelta(hours=1), 8),
            shift(morning, t0 + timedelta(hours=9), 8),
        ],
    )
    settings = await migrated(
        DEFINITION,
        on_call_clinicians=[evening, night, morning],
        on_call_shifts=[s.model_dump(mode="json") for s in roster.shifts],
    )
    pool = await db.create_pool(settings)
    intake, client = uuid.uuid4(), uuid.uuid4()
    escalated = Envelope.wrap(
        IntakeEscalated(intake_id=intake, client_id=client, severity_band="severe"),
        occurred_at=t0,
    )
    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                await handlers.store_messages(escalated, conn, settings)
            assert await alerted(pool, escalated) == [evening]

            async def hand_over(at: datetime) -> int:
                async with conn.transaction():
                    return await on_call.hand_over(conn, roster, at)

            assert await hand_over(t0 + timedelta(minutes=30)) == 0  # still the evening's
            assert await hand_over(t0 + timedelta(hours=2)) == 1
            assert await hand_over(t0 + timedelta(hours=2, minutes=1)) == 0  # once each
            assert await alerted(pool, escalated) == [evening, night]
            clients_own = await pool.fetchval(
                "SELECT count(*) FROM messages WHERE event_id = $1 AND recipient_id = $2",
                escalated.event_id,
                client,
            )
            assert clients_own == 1  # the crisis information, not again

            triaged = Envelope.wrap(
                IntakeTriaged(
                    intake_id=intake,
                    client_id=client,
                    clinician_id=night,
                    decision="resume_matching",
                ),
                occurred_at=t0 + timedelta(hours=3),
            )
            async with conn.transaction():
                await handlers.store_messages(triaged, conn, settings)
            assert await hand_over(t0 + timedelta(hours=10)) == 0  # triaged: nobody more
            assert await alerted(pool, escalated) == [evening, night]
            kept = await pool.fetchval(
                "SELECT envelope FROM escalations WHERE intake_id = $1", intake
            )
            assert kept is None  # the event (a severity band) goes with the triage
    finally:
        await pool.close()


async def test_a_triage_that_comes_before_its_escalation_closes_it(migrated) -> None:
    """The two events travel on different topics: a triage read first still closes the
    escalation that comes after it."""
    clinician = uuid.uuid4()
    t0 = datetime.now(UTC).replace(microsecond=0)
    settings = await migrated(DEFINITION, on_call_clinicians=[clinician])
    pool = await db.create_pool(settings)
    intake, client = uuid.uuid4(), uuid.uuid4()
    triaged = Envelope.wrap(
        IntakeTriaged(
            intake_id=intake, client_id=client, clinician_id=clinician, decision="refer_elsewhere"
        ),
        occurred_at=t0 + timedelta(minutes=5),
    )
    escalated = Envelope.wrap(
        IntakeEscalated(intake_id=intake, client_id=client, severity_band="severe"),
        occurred_at=t0,
    )
    try:
        async with pool.acquire() as conn:
            for event in (triaged, escalated):
                async with conn.transaction():
                    await handlers.store_messages(event, conn, settings)
            late = OnCallRoster(clinician_ids=[clinician, uuid.uuid4()])  # somebody new
            async with conn.transaction():
                assert await on_call.hand_over(conn, late, t0 + timedelta(hours=1)) == 0
    finally:
        await pool.close()
