"""Notifications' message planner on FastStream's in-memory broker (the database is real)."""

from __future__ import annotations

import uuid

from chassis import db
from chassis.testing.handlers import handlers_of
from contracts import Envelope
from contracts.events import IntakeEscalated
from notifications.app import DEFINITION
from notifications.handlers import consumers


async def test_an_escalation_alerts_the_on_call_clinicians_of_the_settings(
    migrated_offline,
) -> None:
    clinicians = [uuid.uuid4(), uuid.uuid4()]
    # The roster reaches the handler through FastStream's context, from these settings.
    settings = await migrated_offline(DEFINITION, on_call_clinicians=clinicians)
    pool = await db.create_pool(settings)
    client = uuid.uuid4()
    escalated = Envelope.wrap(
        IntakeEscalated(intake_id=uuid.uuid4(), client_id=client, severity_band="severe")
    )

    async def planned() -> dict[uuid.UUID, int]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT recipient_id, count(*) AS n FROM messages"
                " WHERE recipient_id = any($1::uuid[]) GROUP BY recipient_id",
                [*clinicians, client],
            )
        return {row["recipient_id"]: row["n"] for row in rows}

    try:
        async with handlers_of(consumers, settings, pool) as worker:
            await worker.deliver(escalated)
            first = await planned()
            await worker.deliver(escalated)  # redelivered: nothing more
            assert await planned() == first
        assert set(first) >= set(clinicians)
        assert worker.dead_letters == []
    finally:
        await pool.close()
