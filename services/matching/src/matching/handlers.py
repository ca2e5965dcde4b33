"""Event handlers: the matcher, and the therapist read model from catalog's and booking's events.

Each runs in one transaction with its inbox row (chassis.consumer), so a redelivered
event does nothing. Whatever may open a place for a waitlisted intake wakes the
waitlist retrier (service.waitlist_retrier), which retries each intake in its own transaction.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from chassis.consumer import EventConsumers
from contracts import Envelope
from contracts.events import (
    CourseCompleted,
    CourseEnded,
    CourseStarted,
    IntakeSubmitted,
    ReviewPublished,
    RightsRequested,
    TherapistAvailabilityPublished,
    TherapistProfilePublished,
    TherapistProfileWithdrawn,
)
from matching import service, store

consumers = EventConsumers("matching")
# The matcher has a group of its own; the read model's handlers share one (a queue of
# profile and course updates never holds up a match, and the worker joins two groups).
READ_MODEL = "read-model"


@consumers.handler(IntakeSubmitted, name="matcher")
async def match_submitted(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Matches a submitted intake, or waitlists it; skips intakes held for a clinician."""
    submitted: IntakeSubmitted = event.payload
    await service.match_intake(conn, submitted.intake_id)


@consumers.handler(TherapistProfilePublished, name="therapist-profiles", group=READ_MODEL)
async def profile_published(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Keeps the newest profile revision; a new or changed therapist may take waitlisted clients."""
    if await store.apply_profile(conn, event.payload):
        await store.wake_waitlist(conn)


@consumers.handler(TherapistProfileWithdrawn, name="therapist-withdrawals", group=READ_MODEL)
async def profile_withdrawn(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """A withdrawn therapist is no longer offered (unless a newer revision is there)."""
    await store.apply_withdrawal(conn, event.payload)


@consumers.handler(ReviewPublished, name="therapist-ratings", group=READ_MODEL)
async def review_published(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Keeps the therapist's rating for scoring."""
    review: ReviewPublished = event.payload
    await store.apply_rating(conn, review.therapist_id, review.rating_average, review.rating_count)


@consumers.handler(TherapistAvailabilityPublished, name="therapist-availability", group=READ_MODEL)
async def availability_published(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Keeps booking's newest free slots and load; changed availability may open a place."""
    if await store.apply_availability(conn, event.payload):
        await store.wake_waitlist(conn)


@consumers.handler(CourseStarted, name="course-starts", group=READ_MODEL)
async def course_started(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """A course adds to its therapist's load."""
    started: CourseStarted = event.payload
    await store.course_started(
        conn,
        course_id=started.course_id,
        therapist_id=started.therapist_id,
        match_id=started.match_id,
        at=event.occurred_at,
    )


@consumers.handler(CourseCompleted, name="course-completions", group=READ_MODEL)
async def course_completed(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """A completed course frees a place: waitlisted clients are retried."""
    done: CourseCompleted = event.payload
    await store.course_finished(
        conn, course_id=done.course_id, therapist_id=done.therapist_id, at=event.occurred_at
    )
    await store.wake_waitlist(conn)


@consumers.handler(CourseEnded, name="course-ends", group=READ_MODEL)
async def course_ended(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """A course ended early frees a place: waitlisted clients are retried."""
    ended: CourseEnded = event.payload
    await store.course_finished(
        conn, course_id=ended.course_id, therapist_id=ended.therapist_id, at=event.occurred_at
    )
    await store.wake_waitlist(conn)


@consumers.handler(RightsRequested, name="rights-requests")
async def rights_requested(event: Envelope[Any], conn: asyncpg.Connection) -> None:
    """Exports the person's intakes and matches, or erases their free text (GDPR)."""
    await service.handle_rights_request(conn, event.payload)
