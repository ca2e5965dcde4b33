"""The catalog's event consumers: thin translators into the store."""

from __future__ import annotations

import asyncpg

from catalog import service
from chassis.consumer import EventConsumers
from contracts import Envelope
from contracts.events import CourseCompleted, RightsRequested

consumers = EventConsumers("catalog")


@consumers.handler(CourseCompleted, name="review-rights")
async def grant_review_right(event: Envelope[CourseCompleted], conn: asyncpg.Connection) -> None:
    """Records that the client of a completed course may review its therapist, once."""
    await service.grant_review_right(conn, event.payload, event.occurred_at)


@consumers.handler(RightsRequested, name="rights-requests")
async def rights_requested(event: Envelope[RightsRequested], conn: asyncpg.Connection) -> None:
    """Exports the person's reviews, or erases them (GDPR)."""
    await service.handle_rights_request(conn, event.payload)
