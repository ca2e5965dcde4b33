"""What the catalog does. Each action runs in the caller's transaction: the store's writes
and the events they cause commit together (chassis.outbox).

Routes, handlers and the CLI call these; the rules themselves live in `domain`.
Events about a profile carry a version taken from one counter per therapist, so a
consumer of both profile topics keeps whichever event has the higher version.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import asyncpg

from catalog import store
from catalog.domain import profile as rules
from catalog.domain.errors import ReviewConflict
from catalog.domain.profile import ProfileSelfEdit, TherapistProfile
from catalog.domain.reviews import (
    MSG_ALREADY_REVIEWED,
    RatingSummary,
    check_review,
    rating_summary,
    review_right_from,
    to_review_published_event,
)
from catalog.domain.search import SearchQuery
from catalog.domain.search_index import SearchIndex, listed
from catalog.store import StoredTherapist as StoredTherapist  # the api shows it
from chassis import audit, outbox, rights
from chassis.errors import Conflict, NotFound
from contracts.events import CourseCompleted, RightsRequested, TherapistProfileWithdrawn

# TherapistProfileWithdrawn.reason, named for request bodies (a unit test keeps them equal).
WithdrawalReason = Literal["withdrawn_by_admin", "left_platform", "licence_revoked", "other"]


def not_found(therapist_id: uuid.UUID) -> NotFound:
    return NotFound(f"No therapist profile {therapist_id}", code="therapist_not_found")


async def _locked(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> StoredTherapist:
    found = await store.get_therapist(conn, therapist_id, for_update=True)
    if found is None:
        raise not_found(therapist_id)
    return found


async def _tell(conn: asyncpg.Connection, therapist: StoredTherapist) -> None:
    """The profile as it stands, at its version, to the compacted topic (via the outbox)."""
    await outbox.add(
        conn,
        rules.to_published_event(
            therapist.profile,
            therapist.therapist_id,
            therapist.version,
            therapist.rating_average,
            therapist.rating_count,
        ),
    )


async def _announce(conn: asyncpg.Connection, therapist: StoredTherapist) -> StoredTherapist:
    """Publish the profile as it now stands, with the next version."""
    announced = replace(therapist, version=await store.next_version(conn, therapist.therapist_id))
    await _tell(conn, announced)
    return announced


# ----------------------------------------------------------------------------- profiles


async def stored(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> StoredTherapist:
    """The stored profile in any status (for admins and the therapist themself)."""
    found = await store.get_therapist(conn, therapist_id)
    if found is None:
        raise not_found(therapist_id)
    return found


@dataclass(frozen=True)
class PublishedDetail:
    """A published profile with its rating histogram and newest visible reviews."""

    therapist: StoredTherapist
    histogram: dict[int, int]
    latest: list[dict[str, Any]]


async def published_detail(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, latest: int
) -> PublishedDetail:
    found = await store.get_published(conn, therapist_id)
    if found is None:
        raise not_found(therapist_id)
    return PublishedDetail(
        found,
        await store.rating_histogram(conn, therapist_id),
        await store.latest_reviews(conn, therapist_id, latest),
    )


async def create(
    conn: asyncpg.Connection, profile: TherapistProfile, therapist_id: uuid.UUID | None = None
) -> StoredTherapist:
    """A new draft profile (nothing is announced until it is published)."""
    therapist_id = therapist_id or uuid.uuid4()
    created = await store.insert_therapist(conn, therapist_id, profile)
    if created is None:
        raise Conflict(
            f"A therapist profile {therapist_id} exists already", code="therapist_exists"
        )
    return created


async def _save(
    conn: asyncpg.Connection, current: StoredTherapist, profile: TherapistProfile
) -> StoredTherapist:
    """Save an edited profile; a published one must stay complete and is announced again."""
    if current.status == "published":
        rules.publish(current.status, profile)  # still complete enough to stay live
    saved = await store.save_profile(conn, current.therapist_id, profile)
    return await _announce(conn, saved) if saved.status == "published" else saved


async def replace_profile(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, profile: TherapistProfile
) -> StoredTherapist:
    """An admin's edit of the whole profile."""
    return await _save(conn, await _locked(conn, therapist_id), profile)


async def amend(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, changes: dict[str, Any]
) -> StoredTherapist:
    """An admin's partial edit: the named fields change, the whole profile is re-validated."""
    current = await _locked(conn, therapist_id)
    edited = rules.validate_profile({**current.profile.model_dump(), **changes})
    return await _save(conn, current, edited)


async def self_edit(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, edit: ProfileSelfEdit
) -> StoredTherapist:
    """A therapist's edit of their own bio, languages, modes and place."""
    current = await store.get_therapist(conn, therapist_id, for_update=True)
    if current is None:
        raise NotFound(
            "You have no therapist profile yet: an admin creates it", code="therapist_not_found"
        )
    return await _save(conn, current, rules.apply_self_edit(current.profile, edit))


async def _publish(conn: asyncpg.Connection, current: StoredTherapist) -> StoredTherapist:
    status = rules.publish(current.status, current.profile)
    return await _announce(conn, await store.set_status(conn, current.therapist_id, status))


async def publish(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> StoredTherapist:
    return await _publish(conn, await _locked(conn, therapist_id))


async def withdraw(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, reason: WithdrawalReason
) -> StoredTherapist:
    current = await _locked(conn, therapist_id)
    status = rules.withdraw(current.status)
    withdrawn = await store.set_status(conn, therapist_id, status, withdrawn_reason=reason)
    version = await store.next_version(conn, therapist_id)
    await outbox.add(
        conn,
        TherapistProfileWithdrawn(therapist_id=therapist_id, reason=reason, version=version),
    )
    return replace(withdrawn, version=version)


# ------------------------------------------------------------------------------- search


class PublishedCatalog:
    """This process's copy of the published catalog, searched in memory.

    Before answering, it reads what changed since its last read (one round trip, nothing
    when nothing changed), so every answer is exact as of a snapshot taken after the search
    arrived, whichever replica made the change. Searches arriving together share one read:
    a search waits for a read that started after it arrived, never for an older one.
    Reads go one at a time, so they keep one connection of the pool for themselves (taking
    one from the pool and giving it back cost a third of a read); `close` gives it back.
    """

    def __init__(self, changes_at_once: int = 100) -> None:
        self.index: SearchIndex | None = None
        self.since = 0  # read changes made by this transaction or later next
        # More changes than this since the last read (a bulk load): read them all again.
        self.changes_at_once = changes_at_once
        self._reading = asyncio.Lock()
        self._started = 0  # reads started, numbered
        self._finished = 0  # the number of the last read that finished
        self._held: tuple[asyncpg.Pool, asyncpg.Connection] | None = None

    async def search(
        self, pool: asyncpg.Pool, query: SearchQuery
    ) -> tuple[int, list[dict[str, Any]]]:
        index = await self._current(pool)
        return index.search(query)  # no await between the read and this: one state

    async def close(self) -> None:
        """Give the held connection back to its pool (before the pool closes)."""
        async with self._reading:
            await self._let_go()

    async def _current(self, pool: asyncpg.Pool) -> SearchIndex:
        arrived_after = self._started
        async with self._reading:
            if self.index is not None and self._finished > arrived_after:
                return self.index
            self._started += 1
            number = self._started
            conn = await self._connection(pool)
            try:
                if self.index is None:
                    since, rows = await store.published_catalog(conn)
                    self.index = SearchIndex(listed(row) for row in rows)
                else:
                    limit = self.changes_at_once
                    since, changes = await store.search_changes(conn, self.since, limit)
                    if len(changes) >= limit:
                        since, changes = await store.search_changes(conn, self.since)
                    for therapist_id, row in changes:
                        self.index.put(therapist_id, None if row is None else listed(row))
            except BaseException:
                await self._let_go()  # the pool resets or replaces it; the next read takes one
                raise
            self.since = since
            self._finished = number
            return self.index

    async def _connection(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        if self._held is None or self._held[0] is not pool:
            await self._let_go()
            conn = await pool.acquire()
            try:
                await store.hold_for_search(conn)
            except BaseException:
                await pool.release(conn)
                raise
            self._held = (pool, conn)
        return self._held[1]

    async def _let_go(self) -> None:
        if self._held is not None:
            (pool, conn), self._held = self._held, None
            await pool.release(conn)


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
                    # Written once, already published: a bulk load leaves no dead rows behind.
                    status = rules.publish("draft", profile)
                    created = await store.insert_therapist(
                        conn, therapist_id, profile, status=status, version=1
                    )
                    if created is None:  # another load inserted it meanwhile
                        raise Conflict(f"Therapist {therapist_id} was loaded concurrently")
                    await _tell(conn, created)
                    result.created += 1
                elif current.profile == profile and current.status == "published":
                    result.unchanged += 1
                else:
                    await _publish(conn, await store.save_profile(conn, therapist_id, profile))
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
    await _locked(conn, therapist_id)  # one rating update at a time per therapist
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
    # A review shows that its writer had therapy: health data, so the change is audited.
    await audit.record(
        conn,
        actor_id=str(client_id),
        actor_role="client",
        subject_id=client_id,
        action="create",
        resource="review",
        resource_id=str(review_id),
    )
    summary, rated = await _recount(conn, therapist_id)
    await outbox.add(conn, to_review_published_event(review_id, accepted, summary))
    if rated.status == "published":
        rated = await _announce(conn, rated)
    return PostedReview(review_id, rated)


async def hide_review(
    conn: asyncpg.Connection, review_id: uuid.UUID, admin_id: uuid.UUID
) -> StoredTherapist:
    """Hide a review: it stays on file but no longer shows or counts. Hiding twice is a no-op."""
    parties = await store.review_parties(conn, review_id)
    if parties is None:
        raise NotFound(f"No review {review_id}", code="review_not_found")
    therapist_id, client_id = parties
    current = await _locked(conn, therapist_id)
    if not await store.hide_review(conn, review_id, admin_id):
        return current
    await audit.record(
        conn,
        actor_id=str(admin_id),
        actor_role="admin",
        subject_id=client_id,
        action="hide",
        resource="review",
        resource_id=str(review_id),
    )
    _, rated = await _recount(conn, therapist_id)
    # No ReviewPublished (nothing new is counted): the re-announced profile carries the rating.
    return await _announce(conn, rated) if rated.status == "published" else rated


async def _recount(
    conn: asyncpg.Connection, therapist_id: uuid.UUID
) -> tuple[RatingSummary, StoredTherapist]:
    summary = rating_summary(await store.visible_ratings(conn, therapist_id))
    return summary, await store.set_rating(conn, therapist_id, summary.average, summary.count)


# ----------------------------------------------------------------------------- patient rights

# The catalog keeps nothing clinical about a client: their reviews go altogether.
ERASED = ["reviews", "review_text", "review_rights"]


async def grant_review_right(
    conn: asyncpg.Connection, completed: CourseCompleted, occurred_at: datetime
) -> None:
    """The client of a completed course may review its therapist, once; not when the client
    had their reviews erased after the course was completed (the event was in flight)."""
    if await rights.erased_since(conn, completed.client_id, occurred_at):
        return
    # The inbox drops a redelivered event; the course key also absorbs a re-emitted one.
    await store.record_review_right(conn, review_right_from(completed), completed.completed_at)


async def handle_rights_request(conn: asyncpg.Connection, requested: RightsRequested) -> None:
    """Export this service's part, or erase the person's reviews, and answer."""
    if requested.kind == "export":
        data = await store.personal_data(conn, requested.subject_id)
        data["access_log"] = await audit.for_subject(conn, requested.subject_id)
        reviews = len(data["reviews"])
        await rights.store_export(
            conn,
            requested,
            data,
            [f"Katalog: {rights.counted(reviews, 'omdöme', 'omdömen')} (betyg och text)"],
            [f"Catalog: {rights.counted(reviews, 'review', 'reviews')} (rating and text)"],
        )
        return
    for therapist_id in await store.erase_reviews(conn, requested.subject_id):
        await _locked(conn, therapist_id)
        _, rated = await _recount(conn, therapist_id)
        if rated.status == "published":
            await _announce(conn, rated)  # the rating without the erased reviews
    await rights.record_erasure(conn, requested, erased=ERASED, kept=["audit_log"])


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The retention job's part here: export parts nobody fetched."""
    return {"export_parts": await rights.purge_export_parts(conn, now)}
