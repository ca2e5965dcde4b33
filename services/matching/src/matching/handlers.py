"""Event handlers: the matcher, and the therapist read model from catalog's and booking's events.

Each runs in one transaction with its inbox row (chassis.consumer), so a redelivered
event does nothing. Whatever may open a place for a waitlisted intake wakes the
waitlist retrier (service.waitlist_retrier), which retries each intake in its own transaction.
Whatever changes a therapist tells every worker's candidate index to read it again
(service.keep_candidate_index): the read-model group's partitions are spread over the
replicas, the index of each must still see every change.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from faststream import Context

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
from matching.settings import Settings

consumers = EventConsumers("matching")
# The matcher has a group of its own; the read model's handlers share one (a queue of
# profile and course updates never holds up a match, and the worker joins two groups).
READ_MODEL = "read-model"


@consumers.batch_handler(IntakeSubmitted, name="matcher", ready=service.index_ready)
async def match_submitted(
    events: list[Envelope[IntakeSubmitted]],
    conn: asyncpg.Connection,
    settings: Annotated[Settings, Context()],
) -> None:
    """Matches submitted intakes, or waitlists them; skips intakes held for a clinician."""
    # Built: `ready` waited for it before this transaction took its connection. Should it
    # be building again meanwhile, this fails at once (retried after `ready`), not waits here.
    await service.match_submitted(conn, events, service.built_index(settings))


@consumers.handler(TherapistProfilePublished, name="therapist-profiles", group=READ_MODEL)
async def profile_published(
    event: Envelope[TherapistProfilePublished], conn: asyncpg.Connection
) -> None:
    """Keeps the newest profile revision; a new or changed therapist may take waitlisted clients."""
    profile = event.payload
    if await store.apply_profile(conn, profile):
        await store.wake_waitlist(conn)
    await store.therapist_changed(conn, profile.therapist_id)


@consumers.handler(TherapistProfileWithdrawn, name="therapist-withdrawals", group=READ_MODEL)
async def profile_withdrawn(
    event: Envelope[TherapistProfileWithdrawn], conn: asyncpg.Connection
) -> None:
    """A withdrawn therapist is no longer offered (unless a newer revision is there)."""
    withdrawal = event.payload
    if await store.apply_withdrawal(conn, withdrawal):
        await store.therapist_changed(conn, withdrawal.therapist_id)


@consumers.handler(ReviewPublished, name="therapist-ratings", group=READ_MODEL)
async def review_published(event: Envelope[ReviewPublished], conn: asyncpg.Connection) -> None:
    """Keeps the therapist's rating for scoring."""
    review = event.payload
    if await store.apply_rating(
        conn, review.therapist_id, review.rating_average, review.rating_count
    ):
        await store.therapist_changed(conn, review.therapist_id)


@consumers.handler(TherapistAvailabilityPublished, name="therapist-availability", group=READ_MODEL)
async def availability_published(
    event: Envelope[TherapistAvailabilityPublished], conn: asyncpg.Connection
) -> None:
    """Keeps booking's newest free slots and load; changed availability may open a place."""
    summary = event.payload
    if await store.apply_availability(conn, summary):
        await store.wake_waitlist(conn)
        await store.therapist_changed(conn, summary.therapist_id)


@consumers.handler(CourseStarted, name="course-starts", group=READ_MODEL)
async def course_started(event: Envelope[CourseStarted], conn: asyncpg.Connection) -> None:
    """A course adds to its therapist's load."""
    started = event.payload
    await store.course_started(
        conn,
        course_id=started.course_id,
        therapist_id=started.therapist_id,
        match_id=started.match_id,
        at=event.occurred_at,
    )
    await store.therapist_changed(conn, started.therapist_id)


@consumers.handler(CourseCompleted, name="course-completions", group=READ_MODEL)
async def course_completed(event: Envelope[CourseCompleted], conn: asyncpg.Connection) -> None:
    """A completed course frees a place: waitlisted clients are retried."""
    done = event.payload
    await store.course_finished(
        conn, course_id=done.course_id, therapist_id=done.therapist_id, at=event.occurred_at
    )
    await store.wake_waitlist(conn)
    await store.therapist_changed(conn, done.therapist_id)


@consumers.handler(CourseEnded, name="course-ends", group=READ_MODEL)
async def course_ended(event: Envelope[CourseEnded], conn: asyncpg.Connection) -> None:
    """A course ended early frees a place: waitlisted clients are retried."""
    ended = event.payload
    await store.course_finished(
        conn, course_id=ended.course_id, therapist_id=ended.therapist_id, at=event.occurred_at
    )
    await store.wake_waitlist(conn)
    await store.therapist_changed(conn, ended.therapist_id)


# Rare, and never urgent to the second: they share the read model's group (one consumer
# less polling the broker in every worker).
@consumers.handler(RightsRequested, name="rights-requests", group=READ_MODEL)
async def rights_requested(event: Envelope[RightsRequested], conn: asyncpg.Connection) -> None:
    """Exports the person's intakes and matches, or erases their free text (GDPR)."""
    await service.handle_rights_request(conn, event.payload)
