"""The catalog's handlers on FastStream's in-memory broker (the database is real)."""

from __future__ import annotations

import uuid

from catalog import store
from catalog.app import DEFINITION
from catalog.handlers import consumers
from chassis import db
from chassis.testing.events import a_completed_course
from chassis.testing.handlers import handlers_of
from contracts import Envelope
from contracts.events import CourseCompleted


def completed(course: uuid.UUID) -> CourseCompleted:
    return a_completed_course(course, uuid.uuid4(), uuid.uuid4())


async def test_a_completed_course_gives_its_client_one_review_right(migrated_offline) -> None:
    settings = await migrated_offline(DEFINITION)
    pool = await db.create_pool(settings)
    course = uuid.uuid4()
    event = Envelope.wrap(completed(course))
    try:
        async with handlers_of(consumers, settings, pool) as worker:
            await worker.deliver(event, event)  # redelivered: the inbox applies it once
            await worker.deliver(Envelope.wrap(completed(course)))  # re-emitted: one right
            await worker.send(CourseCompleted, b'{"not": "an envelope"}', key=str(course))
            async with pool.acquire() as conn:
                right = await store.review_right(conn, course)
                rights = await conn.fetchval(
                    "SELECT count(*) FROM review_rights WHERE course_id = $1", course
                )
        assert right is not None and right.client_id == event.payload.client_id
        assert rights == 1
        # The record that broke its contract went to the dead letters, the rest applied.
        assert len(worker.dead_letters) == 1
        body, headers = worker.dead_letters[0]
        assert body == b'{"not": "an envelope"}'
        assert headers["x-dead-letter-consumer"] == "review-rights"
    finally:
        await pool.close()
