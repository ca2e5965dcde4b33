"""Event handlers of booking: the catalog's therapist profiles and matching's matches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg

from booking import service
from chassis.consumer import EventConsumers, PermanentError
from chassis.errors import DomainError
from contracts import Envelope
from contracts.events import (
    MatchApproved,
    RightsRequested,
    TherapistMatched,
    TherapistProfilePublished,
    TherapistProfileWithdrawn,
)

consumers = EventConsumers("booking")
# One consumer group for all: nothing here is urgent enough to wait for a group of its own,
# and every group costs a join when the worker starts.
INBOUND = "inbound"


@contextlib.contextmanager
def _rules_are_final() -> Iterator[None]:
    """An event that breaks a booking rule will break it on every retry: dead-letter it."""
    try:
        yield
    except DomainError as exc:
        raise PermanentError(f"{exc.code}: {exc.message}") from exc


@consumers.handler(TherapistProfilePublished, name="therapist-profiles", group=INBOUND)
async def profile_published(
    event: Envelope[TherapistProfilePublished], conn: asyncpg.Connection
) -> None:
    """Keeps the therapist's time zone, modes and practice address (higher version wins)."""
    with _rules_are_final():
        await service.apply_profile(conn, event.payload, datetime.now(UTC))


@consumers.handler(TherapistProfileWithdrawn, name="therapist-withdrawals", group=INBOUND)
async def profile_withdrawn(
    event: Envelope[TherapistProfileWithdrawn], conn: asyncpg.Connection
) -> None:
    """Closes a withdrawn therapist for new bookings (higher version wins)."""
    with _rules_are_final():
        await service.apply_withdrawal(conn, event.payload, datetime.now(UTC))


@consumers.handler(TherapistMatched, name="course-opener", group=INBOUND)
async def therapist_matched(event: Envelope[TherapistMatched], conn: asyncpg.Connection) -> None:
    """Opens the course of a match (or keeps it until a clinician approves it)."""
    with _rules_are_final():
        await service.on_match(conn, event.payload, datetime.now(UTC))


@consumers.handler(MatchApproved, name="approved-course-opener", group=INBOUND)
async def match_approved(event: Envelope[MatchApproved], conn: asyncpg.Connection) -> None:
    """Opens the course of a match a clinician approved."""
    with _rules_are_final():
        await service.on_approval(conn, event.payload, datetime.now(UTC))


@consumers.handler(RightsRequested, name="rights-requests", group=INBOUND)
async def rights_requested(event: Envelope[RightsRequested], conn: asyncpg.Connection) -> None:
    """Exports the person's courses and sessions, or erases what need not be kept (GDPR)."""
    await service.handle_rights_request(conn, event.payload)
