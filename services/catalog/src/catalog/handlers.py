"""The catalog's event consumers: thin translators into the store."""

from __future__ import annotations

import asyncpg

from catalog import service, store
from catalog.domain.reviews import review_right_from
from chassis.consumer import EventConsumers
from contracts import Envelope
from contracts.events import CourseCompleted, RightsRequested

consumers = EventConsumers("catalog")


@consumers.handler(CourseCompleted, name="review-rights")
async def grant_review_right(event: Envelope[CourseCompleted], conn: asyncpg.Connection) -> None:
    """Records that the client of a completed course may review its therapist, once."""
    completed = event.payload
    # The inbox drops a redelivered event; the course key also absorbs a re-emitted one.
    await store.record_review_right(conn, review_right_from(completed), completed.completed_at)


@consumers.handler(RightsRequested, name="rights-requests")
async def rights_requested(event: Envelope[RightsRequested], conn: asyncpg.Connection) -> None:
    """Exports the person's reviews, or erases them (GDPR)."""
    await service.handle_rights_request(conn, event.payload)
