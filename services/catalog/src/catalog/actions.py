"""What the catalog does. Each action runs in the caller's transaction: the store's writes
and the events they cause commit together (chassis.outbox).

Routes, handlers and the CLI call these; the rules themselves live in `domain`.
Events about a profile carry a version taken from one counter per therapist, so a
consumer of both profile topics keeps whichever event has the higher version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from chassis.errors import Conflict, NotFound
from contracts.events import TherapistProfileWithdrawn

from catalog import store
from catalog.domain import profile as rules
from catalog.domain.errors import ReviewConflict
from catalog.domain.profile import ProfileSelfEdit, TherapistProfile
from catalog.domain.reviews import (
    MSG_ALREADY_REVIEWED,
    RatingSummary,
    check_review,
    rating_summary,
    to_review_published_event,
)
from catalog.store import StoredTherapist
from chassis import outbox

WithdrawalReason = Literal["withdrawn_by_admin", "left_platform", "licence_revoked", "other"]


def not_found(therapist_id: uuid.UUID) -> NotFound:
    return NotFound(f"No therapist profile {therapist_id}", code="therapist_not_found")


async def _locked(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> StoredTherapist:
    found = await store.get_therapist(conn, therapist_id, for_update=True)
    if found is None:
        raise not_found(therapist_id)
    return found


async def _announce(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> StoredTherapist:
    """Publish the profile as it now stands, with the next version."""
    version = await store.next_version(conn, therapist_id)
    current = await _locked(conn, therapist_id)
    await outbox.add(
        conn,
        rules.to_published_event(
            current.profile,
            therapist_id,
            version,
            current.rating_average,
            current.rating_count,
        ),
    )
    return current


# ----------------------------------------------------------------------------- profiles


async def create(
    conn: asyncpg.Connection, profile: TherapistProfile, therapist_id: uuid.UUID | None = None
) -> StoredTherapist:
    """A new draft profile (nothing is announced until it is published)."""
    therapist_id = therapist_id or uuid.uuid4()
    if not await store.insert_therapist(conn, therapist_id, profile):
        raise Conflict(
            f"A therapist profile {therapist_id} exists already", code="therapist_exists"
        )
    return await _locked(conn, therapist_id)


async def replace(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, profile: TherapistProfile
) -> StoredTherapist:
    """Save an edited profile; a published one must stay complete and is announced again."""
    current = await _locked(conn, therapist_id)
    if current.status == "published":
        rules.publish(current.status, profile)  # still complete enough to stay live
    await store.save_profile(conn, therapist_id, profile)
    if current.status == "published":
        return await _announce(conn, therapist_id)
    return await _locked(conn, therapist_id)


async def amend(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, changes: dict[str, Any]
) -> StoredTherapist:
    """An admin's partial edit: the named fields change, the whole profile is re-validated."""
    current = await _locked(conn, therapist_id)
    edited = rules.validate_profile({**current.profile.model_dump(), **changes})
    return await replace(conn, therapist_id, edited)


async def self_edit(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, edit: ProfileSelfEdit
) -> StoredTherapist:
    """A therapist's edit of their own bio, languages, modes and place."""
    current = await store.get_therapist(conn, therapist_id, for_update=True)
    if current is None:
        raise NotFound(
            "You have no therapist profile yet: an admin creates it", code="therapist_not_found"
        )
    return await replace(conn, therapist_id, rules.apply_self_edit(current.profile, edit))


async def publish(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> StoredTherapist:
    current = await _locked(conn, therapist_id)
    status = rules.publish(current.status, current.profile)
    await store.set_status(conn, therapist_id, status)
    return await _announce(conn, therapist_id)


async def withdraw(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, reason: WithdrawalReason
) -> StoredTherapist:
    current = await _locked(conn, therapist_id)
    status = rules.withdraw(current.status)
    await store.set_status(conn, therapist_id, status, withdrawn_reason=reason)
    version = await store.next_version(conn, therapist_id)
    await outbox.add(
        conn,
        TherapistProfileWithdrawn(therapist_id=therapist_id, reason=reason, version=version),
    )
    return await _locked(conn, therapist_id)


# ------------------------------------------------------------------------------ loading


@dataclass
class LoadResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


async def load(
    pool: asyncpg.Pool,
    entries: list[tuple[uuid.UUID, TherapistProfile]],
    *,
    batch: int = 200,
) -> LoadResult:
    """Create or update profiles with fixed ids and publish them; running it again with the
    same entries changes nothing and announces nothing."""
    result = LoadResult()
    for start in range(0, len(entries), batch):
        async with pool.acquire() as conn, conn.transaction():
            for therapist_id, profile in entries[start : start + batch]:
                current = await store.get_therapist(conn, therapist_id, for_update=True)
                if current is None:
                    await create(conn, profile, therapist_id)
                    await publish(conn, therapist_id)
                    result.created += 1
                elif current.profile == profile and current.status == "published":
                    result.unchanged += 1
                else:
                    await store.save_profile(conn, therapist_id, profile)
                    await publish(conn, therapist_id)
                    result.updated += 1
    return result


# ------------------------------------------------------------------------------ reviews


@dataclass(frozen=True)
class PostedReview:
    review_id: uuid.UUID
    therapist: StoredTherapist


async def post_review(
    conn: asyncpg.Connection,
    client_id: uuid.UUID,
    therapist_id: uuid.UUID,
    course_id: uuid.UUID,
    rating: int,
    text: str,
) -> PostedReview:
    """A verified review: counted into the rating, told to matching, profile re-announced."""
    current = await _locked(conn, therapist_id)  # one rating update at a time per therapist
    accepted = check_review(
        await store.review_right(conn, course_id),
        await store.course_reviewed(conn, course_id),
        client_id,
        therapist_id,
        rating,
        text,
    )
    review_id = uuid.uuid4()
    try:
        async with conn.transaction():  # a savepoint: the unique course is the safety net
            await store.insert_review(conn, review_id, accepted)
    except asyncpg.UniqueViolationError:
        raise ReviewConflict(MSG_ALREADY_REVIEWED, code="already_reviewed") from None
    summary = await _recount(conn, therapist_id)
    await outbox.add(conn, to_review_published_event(review_id, accepted, summary))
    if current.status == "published":
        await _announce(conn, therapist_id)
    return PostedReview(review_id, await _locked(conn, therapist_id))


async def hide_review(
    conn: asyncpg.Connection, review_id: uuid.UUID, admin_id: uuid.UUID
) -> StoredTherapist:
    """Hide a review: it stays on file but no longer shows or counts. Hiding twice is a no-op."""
    therapist_id = await store.review_therapist(conn, review_id)
    if therapist_id is None:
        raise NotFound(f"No review {review_id}", code="review_not_found")
    current = await _locked(conn, therapist_id)
    if not await store.hide_review(conn, review_id, admin_id):
        return current
    await _recount(conn, therapist_id)
    # No ReviewPublished (nothing new is counted): the re-announced profile carries the rating.
    if current.status == "published":
        return await _announce(conn, therapist_id)
    return await _locked(conn, therapist_id)


async def _recount(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> RatingSummary:
    summary = rating_summary(await store.visible_ratings(conn, therapist_id))
    await store.set_rating(conn, therapist_id, summary.average, summary.count)
    return summary
