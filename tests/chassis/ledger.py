"""A tiny service built on the chassis, for testing the chassis itself.

It records ReviewPublished events into `entries` (a consumer with inbox,
retries and dead letters) and accepts reviews over HTTP (a route that writes
a state change and its event through the outbox).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from chassis import outbox
from chassis.app import ServiceDefinition, pool_of
from chassis.auth import Principal, require
from chassis.consumer import EventConsumers, PermanentError
from chassis.settings import ServiceSettings, service_config
from contracts import Envelope
from contracts.events import ReviewPublished, TherapistAvailabilityPublished


class LedgerSettings(ServiceSettings):
    model_config = service_config("ledger")
    service: str = "ledger"


# review_id -> how many more times the handler should fail before it succeeds
FAILURES: dict[uuid.UUID, int] = {}
# review_id -> awaited by the handler before it applies (to kill a worker in mid-batch)
HOLD: dict[uuid.UUID, Callable[[], Awaitable[None]]] = {}

consumers = EventConsumers("ledger")


@consumers.handler(ReviewPublished, name="ledger-recorder", group="ledger")
async def record(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Records every published review."""
    review: ReviewPublished = event.payload
    if review.rating == 1:
        raise PermanentError("the ledger does not accept one-star reviews")
    if FAILURES.get(review.review_id, 0) > 0:
        FAILURES[review.review_id] -= 1
        raise RuntimeError("the ledger is having a bad moment")
    if review.review_id in HOLD:
        await HOLD[review.review_id]()
    await conn.execute(
        "INSERT INTO entries (event_id, therapist_id, rating, rating_count)"
        " VALUES ($1, $2, $3, $4)",
        event.event_id,
        review.therapist_id,
        review.rating,
        review.rating_count,
    )
    if review.rating == 5:
        # An event caused by an event: correlation and causation must follow.
        await outbox.add(
            conn,
            TherapistAvailabilityPublished(
                therapist_id=review.therapist_id, computed_at=datetime.now(UTC), active_courses=0
            ),
        )


@consumers.handler(TherapistAvailabilityPublished, name="ledger-availability", group="ledger")
async def note_availability(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Notes availability summaries (shares the `ledger` group with the recorder)."""
    await conn.execute(
        "INSERT INTO availability_seen (event_id, therapist_id) VALUES ($1, $2)",
        event.event_id,
        event.payload.therapist_id,
    )


router = APIRouter()


class ReviewIn(BaseModel):
    therapist_id: uuid.UUID
    rating: int = Field(ge=1, le=5)


@router.post("/reviews", status_code=201)
async def submit(
    body: ReviewIn,
    request: Request,
    who: Annotated[Principal, Depends(require("admin"))],
) -> dict[str, str]:
    review_id = uuid.uuid4()
    async with pool_of(request).acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO submissions (review_id, therapist_id, rating) VALUES ($1, $2, $3)",
            review_id,
            body.therapist_id,
            body.rating,
        )
        envelope = await outbox.add(
            conn,
            ReviewPublished(
                review_id=review_id,
                therapist_id=body.therapist_id,
                course_id=uuid.uuid4(),
                rating=body.rating,
                rating_average=body.rating,
                rating_count=1,
            ),
        )
    return {"review_id": str(review_id), "event_id": str(envelope.event_id)}


@router.get("/me")
async def me(who: Annotated[Principal, Depends(require("client", "therapist"))]) -> dict[str, str]:
    return {"id": who.id, "role": who.role}


@router.get("/fails")
async def fails(value: str = "") -> dict[str, str]:
    """Fails like a database refusing a value: the message quotes the value."""
    raise RuntimeError(f"invalid input for query argument $1: {value!r}")


LEDGER = ServiceDefinition(
    name="ledger",
    settings_class=LedgerSettings,
    migrations=Path(__file__).parent / "ledger_migrations",
    routers=[router],
    consumers=consumers,
    # A test service: it publishes events the registry gives to other services.
    publishes=[ReviewPublished, TherapistAvailabilityPublished],
)


def review(rating: int = 4, **changes: Any) -> ReviewPublished:
    fields: dict[str, Any] = dict(
        review_id=uuid.uuid4(),
        therapist_id=uuid.uuid4(),
        course_id=uuid.uuid4(),
        rating=rating,
        rating_average=float(rating),
        rating_count=1,
    )
    fields.update(changes)
    return ReviewPublished(**fields)
