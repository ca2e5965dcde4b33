"""Booking's course openers on FastStream's in-memory broker (the database is real)."""

from __future__ import annotations

import uuid

from booking import store
from booking.app import DEFINITION
from booking.handlers import consumers
from chassis import db
from chassis.testing.events import a_match
from chassis.testing.handlers import handlers_of
from contracts import Envelope
from contracts.events import MatchApproved


async def test_a_match_awaiting_approval_opens_its_course_once_approved(migrated_offline) -> None:
    settings = await migrated_offline(DEFINITION)
    pool = await db.create_pool(settings)
    client, therapist = uuid.uuid4(), uuid.uuid4()
    matched = a_match(client, therapist, severity_band="severe", requires_approval=True)
    approved = MatchApproved(
        match_id=matched.match_id,
        intake_id=matched.intake_id,
        client_id=client,
        therapist_id=therapist,
        clinician_id=uuid.uuid4(),
    )

    async def courses() -> list[uuid.UUID]:
        async with pool.acquire() as conn:
            return [row["therapist_id"] for row in await store.courses_of(conn, client, "client")]

    try:
        async with handlers_of(consumers, settings, pool) as worker:
            await worker.deliver(Envelope.wrap(matched))
            assert await courses() == []  # held for the clinician
            approval = Envelope.wrap(approved)
            await worker.deliver(approval, approval)  # redelivered: one course
            assert await courses() == [therapist]
        assert worker.dead_letters == []
    finally:
        await pool.close()
