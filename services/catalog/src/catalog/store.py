"""All SQL of the catalog (asyncpg): therapists, review rights and reviews."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from catalog.domain.profile import ProfileStatus, TherapistProfile
from catalog.domain.reviews import AcceptedReview, ReviewRight
from catalog.domain.search_index import SUMMARY_FIELDS

PROFILE_COLUMNS: tuple[str, ...] = tuple(TherapistProfile.model_fields)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- therapists


@dataclass(frozen=True)
class StoredTherapist:
    therapist_id: uuid.UUID
    status: ProfileStatus
    profile: TherapistProfile
    version: int
    rating_average: float | None
    rating_count: int
    withdrawn_reason: str | None
    created_at: datetime
    updated_at: datetime


def _therapist(row: asyncpg.Record) -> StoredTherapist:
    return StoredTherapist(
        therapist_id=row["therapist_id"],
        status=row["status"],
        # As stored, not validated again: a profile valid when written stays readable (shown,
        # found, recounted, erased from, withdrawn) after a rule is tightened; today's rules
        # apply when it is edited or published (service.amend, service.publish).
        profile=TherapistProfile.model_construct(**{c: row[c] for c in PROFILE_COLUMNS}),
        version=row["version"],
        rating_average=_float(row["rating_average"]),
        rating_count=row["rating_count"],
        withdrawn_reason=row["withdrawn_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _profile_values(profile: TherapistProfile) -> list[Any]:
    data = profile.model_dump()
    return [data[c] for c in PROFILE_COLUMNS]


async def insert_therapist(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    profile: TherapistProfile,
    *,
    status: ProfileStatus = "draft",
    version: int = 0,
) -> StoredTherapist | None:
    """A new profile (a draft unless told otherwise); None when the id is taken."""
    columns = ", ".join(PROFILE_COLUMNS)
    params = ", ".join(f"${i}" for i in range(4, len(PROFILE_COLUMNS) + 4))
    row = await conn.fetchrow(
        f"INSERT INTO therapists (therapist_id, status, version, {columns})"
        f" VALUES ($1, $2, $3, {params})"
        " ON CONFLICT (therapist_id) DO NOTHING RETURNING *",
        therapist_id,
        status,
        version,
        *_profile_values(profile),
    )
    return _therapist(row) if row else None


async def get_therapist(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, *, for_update: bool = False
) -> StoredTherapist | None:
    """`for_update` serialises changes to one therapist (edits, versions, ratings)."""
    row = await conn.fetchrow(
        "SELECT * FROM therapists WHERE therapist_id = $1" + (" FOR UPDATE" if for_update else ""),
        therapist_id,
    )
    return _therapist(row) if row else None


async def get_published(
    conn: asyncpg.Connection, therapist_id: uuid.UUID
) -> StoredTherapist | None:
    row = await conn.fetchrow(
        "SELECT * FROM therapists WHERE therapist_id = $1 AND status = 'published'", therapist_id
    )
    return _therapist(row) if row else None


async def save_profile(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, profile: TherapistProfile
) -> StoredTherapist:
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(PROFILE_COLUMNS, start=2))
    row = await conn.fetchrow(
        f"UPDATE therapists SET {sets}, updated_at = now() WHERE therapist_id = $1 RETURNING *",
        therapist_id,
        *_profile_values(profile),
    )
    return _therapist(row)


async def set_status(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    status: ProfileStatus,
    *,
    withdrawn_reason: str | None = None,
) -> StoredTherapist:
    row = await conn.fetchrow(
        "UPDATE therapists SET status = $2, withdrawn_reason = $3, updated_at = now()"
        " WHERE therapist_id = $1 RETURNING *",
        therapist_id,
        status,
        withdrawn_reason,
    )
    return _therapist(row)


async def next_version(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> int:
    """The version of the event about to be written for this therapist."""
    version: int = await conn.fetchval(
        "UPDATE therapists SET version = version + 1 WHERE therapist_id = $1 RETURNING version",
        therapist_id,
    )
    return version


async def set_rating(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, average: float | None, count: int
) -> StoredTherapist:
    row = await conn.fetchrow(
        "UPDATE therapists SET rating_average = $2, rating_count = $3, updated_at = now()"
        " WHERE therapist_id = $1 RETURNING *",
        therapist_id,
        None if average is None else Decimal(str(average)),
        count,
    )
    return _therapist(row)


# ------------------------------------------------------------------------------ search

# What a search hit shows and is found and sorted by.
_SUMMARY = ", ".join(f"t.{c}" for c in SUMMARY_FIELDS)
# The oldest transaction still running (or the next one) as of the statement's snapshot:
# every change not visible to the statement was made by it or a later transaction.
_SNAPSHOT_XMIN = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


async def published_catalog(conn: asyncpg.Connection) -> tuple[int, list[asyncpg.Record]]:
    """(where to read changes from next, every published profile), from one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        since: int = await conn.fetchval(f"SELECT {_SNAPSHOT_XMIN}")
        rows = await conn.fetch(f"SELECT {_SUMMARY} FROM therapists t WHERE status = 'published'")
    return since, rows


async def hold_for_search(conn: asyncpg.Connection) -> None:
    """Ready a connection that a replica keeps for `search_changes`, asked before every
    search: its plans are made once (generic), not again per `since` (planning cost more
    than running the read). The session setting goes when the connection is given back."""
    conn.keep_session_state()
    await conn.execute("SET plan_cache_mode = force_generic_plan")


async def search_changes(
    conn: asyncpg.Connection, since: int, limit: int | None = None
) -> tuple[int, list[tuple[uuid.UUID, asyncpg.Record | None]]]:
    """(where to read from next, each profile changed by a transaction `since` or later with
    its row if it is published now, else None). One round trip; one row even when nothing
    changed, to carry the snapshot. A change may be read again: applying it is idempotent.
    With a `limit`, at most that many changes (the oldest): a caller that gets `limit` of
    them reads again without one."""
    # The changes come from the changed_by index in order, and the LIMIT keeps a generic
    # plan there (unlimited, it would guess a third of the table and scan it all). The
    # profile is looked up per change (a lateral subquery kept apart by OFFSET 0): as a
    # plain join, the plan hashed all of therapists whenever one profile had changed.
    rows = await conn.fetch(
        f"SELECT {_SNAPSHOT_XMIN} AS since, c.therapist_id AS changed, t.status, {_SUMMARY}"
        " FROM (VALUES (1)) AS one (x)"
        " LEFT JOIN (SELECT therapist_id FROM search_changes"
        "  WHERE changed_by >= $1::text::xid8 ORDER BY changed_by"
        f"  {'' if limit is None else f'LIMIT {int(limit)}'}) AS c ON true"
        " LEFT JOIN LATERAL"
        "  (SELECT * FROM therapists WHERE therapist_id = c.therapist_id OFFSET 0) AS t ON true",
        str(since),
    )
    changes = [
        (row["changed"], row if row["status"] == "published" else None)
        for row in rows
        if row["changed"] is not None
    ]
    return rows[0]["since"], changes


# ----------------------------------------------------------------------------- reviews


async def record_review_right(
    conn: asyncpg.Connection, right: ReviewRight, completed_at: datetime
) -> bool:
    """False when the course was already known (a course completes once)."""
    inserted = await conn.fetchval(
        "INSERT INTO review_rights (course_id, client_id, therapist_id, completed_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (course_id) DO NOTHING RETURNING true",
        right.course_id,
        right.client_id,
        right.therapist_id,
        completed_at,
    )
    return bool(inserted)


async def review_right(conn: asyncpg.Connection, course_id: uuid.UUID) -> ReviewRight | None:
    row = await conn.fetchrow(
        "SELECT course_id, client_id, therapist_id FROM review_rights WHERE course_id = $1",
        course_id,
    )
    return ReviewRight(**dict(row)) if row else None


async def course_reviewed(conn: asyncpg.Connection, course_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM reviews WHERE course_id = $1", course_id))


async def insert_review(
    conn: asyncpg.Connection, review_id: uuid.UUID, review: AcceptedReview
) -> datetime:
    """Raises asyncpg.UniqueViolationError when the course was reviewed meanwhile."""
    created_at: datetime = await conn.fetchval(
        "INSERT INTO reviews (review_id, course_id, client_id, therapist_id, rating, text)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
        review_id,
        review.course_id,
        review.client_id,
        review.therapist_id,
        review.rating,
        review.text,
    )
    return created_at


async def review_parties(
    conn: asyncpg.Connection, review_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(therapist, client) of a review."""
    row = await conn.fetchrow(
        "SELECT therapist_id, client_id FROM reviews WHERE review_id = $1", review_id
    )
    return (row["therapist_id"], row["client_id"]) if row else None


async def hide_review(conn: asyncpg.Connection, review_id: uuid.UUID, by: uuid.UUID) -> bool:
    """False when the review was hidden already."""
    hidden = await conn.fetchval(
        "UPDATE reviews SET hidden = true, hidden_by = $2, hidden_at = now()"
        " WHERE review_id = $1 AND NOT hidden RETURNING true",
        review_id,
        by,
    )
    return bool(hidden)


async def visible_ratings(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> list[int]:
    rows = await conn.fetch(
        "SELECT rating FROM reviews WHERE therapist_id = $1 AND NOT hidden", therapist_id
    )
    return [row["rating"] for row in rows]


async def rating_histogram(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> dict[int, int]:
    rows = await conn.fetch(
        "SELECT rating, count(*) AS n FROM reviews WHERE therapist_id = $1 AND NOT hidden"
        " GROUP BY rating",
        therapist_id,
    )
    histogram = dict.fromkeys(range(1, 6), 0)
    histogram.update({row["rating"]: row["n"] for row in rows})
    return histogram


async def latest_reviews(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, limit: int
) -> list[dict[str, Any]]:
    """The newest visible reviews: no reviewer, no course (privacy)."""
    rows = await conn.fetch(
        "SELECT review_id, rating, text, created_at FROM reviews"
        " WHERE therapist_id = $1 AND NOT hidden ORDER BY created_at DESC, review_id LIMIT $2",
        therapist_id,
        limit,
    )
    return [dict(row) for row in rows]


# --------------------------------------------------------------------------- patient rights


async def personal_data(conn: asyncpg.Connection, client_id: uuid.UUID) -> dict[str, Any]:
    """Everything the catalog holds about the client, for their export."""
    reviews = await conn.fetch(
        "SELECT review_id, course_id, therapist_id, rating, text, hidden, hidden_at, created_at"
        " FROM reviews WHERE client_id = $1 ORDER BY created_at",
        client_id,
    )
    rights = await conn.fetch(
        "SELECT course_id, therapist_id, completed_at FROM review_rights WHERE client_id = $1"
        " ORDER BY completed_at",
        client_id,
    )
    return {"reviews": [dict(r) for r in reviews], "review_rights": [dict(r) for r in rights]}


async def erase_reviews(conn: asyncpg.Connection, client_id: uuid.UUID) -> list[uuid.UUID]:
    """Delete the client's reviews and review rights; returns the therapists reviewed."""
    therapists = await conn.fetch(
        "DELETE FROM reviews WHERE client_id = $1 RETURNING therapist_id", client_id
    )
    await conn.execute("DELETE FROM review_rights WHERE client_id = $1", client_id)
    return sorted({r["therapist_id"] for r in therapists})
