"""The catalog's HTTP routes: thin translators between requests and `service`.

Public (no login): methods, areas, browse/search and a published profile's detail.
Admin: create, edit, publish and withdraw profiles; hide reviews.
Therapist: read and edit their own profile (`/therapists/me` only).
Client: review the therapist of their own completed course, once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from catalog import service
from catalog.domain.profile import ProfileSelfEdit, TherapistProfile
from catalog.domain.reference import areas_view, methods_view
from catalog.domain.reviews import ReviewInput
from catalog.domain.search import SearchQuery
from catalog.responses import (
    Areas,
    HiddenReview,
    Methods,
    OwnProfile,
    PostedReview,
    PublicProfile,
)
from catalog.service import StoredTherapist, WithdrawalReason
from chassis.app import pool_of
from chassis.auth import Principal, require
from chassis.http import SIGNED_IN, problems
from contracts.vocabulary import AgeGroup, FocusArea, MeetingMode, MethodCode, Profession


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:  # inside the chassis' lifespan: the pool closes after this
        catalog = getattr(app.state, "published_catalog", None)
        if catalog is not None:
            await catalog.close()


router = APIRouter(lifespan=_lifespan)

Admin = Annotated[Principal, Depends(require("admin"))]
Therapist = Annotated[Principal, Depends(require("therapist"))]
Client = Annotated[Principal, Depends(require("client"))]

LATEST_REVIEWS = 10


class NewTherapist(TherapistProfile):
    """A profile as an admin creates it; the id is the therapist's person id when known."""

    therapist_id: uuid.UUID | None = None


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: WithdrawalReason


class NewReview(ReviewInput):
    course_id: uuid.UUID


class TherapistSummary(BaseModel):
    """A search hit: enough to choose whom to read more about."""

    therapist_id: uuid.UUID
    name: str
    profession: Profession
    methods: list[MethodCode]
    focus_areas: list[FocusArea]
    languages: list[str]
    modes: list[MeetingMode]
    city: str | None
    age_groups: list[AgeGroup]
    accepting_new_clients: bool
    rating_average: float | None
    rating_count: int


class SearchPage(BaseModel):
    total: int
    page: int
    page_size: int
    items: list[TherapistSummary]


_CARD = TypeAdapter(TherapistSummary)


class SearchCards:
    """Each hit's JSON, serialized once per version of the profile rather than per search.

    A page is most of a search's work when built as models: validating and serializing its
    20 cards costs more than finding them. The index hands out the same summary dict until
    the profile changes, so a card is reused while its summary is that very dict.
    """

    def __init__(self) -> None:
        self._cards: dict[Any, tuple[dict[str, Any], bytes]] = {}

    def card(self, summary: dict[str, Any]) -> bytes:
        cached = self._cards.get(summary["therapist_id"])
        if cached is None or cached[0] is not summary:
            cached = (summary, _CARD.dump_json(TherapistSummary.model_validate(summary)))
            self._cards[summary["therapist_id"]] = cached
        return cached[1]

    def page(self, total: int, query: SearchQuery, items: list[dict[str, Any]]) -> bytes:
        """A `SearchPage` as JSON (its fields in its order)."""
        head = f'{{"total":{total},"page":{query.page},"page_size":{query.page_size},"items":['
        return b"".join((head.encode(), b",".join(map(self.card, items)), b"]}"))


def search_cards(request: Request) -> SearchCards:
    state = request.app.state
    if not hasattr(state, "search_cards"):
        state.search_cards = SearchCards()
    cards: SearchCards = state.search_cards
    return cards


def published_catalog(request: Request) -> service.PublishedCatalog:
    """The process's in-memory catalog for search (one per app, made at first use)."""
    state = request.app.state
    if not hasattr(state, "published_catalog"):
        state.published_catalog = service.PublishedCatalog()
    catalog: service.PublishedCatalog = state.published_catalog
    return catalog


def own_view(therapist: StoredTherapist) -> dict[str, Any]:
    """The whole stored profile with its status: for admins and the therapist themself."""
    return {
        "therapist_id": therapist.therapist_id,
        "status": therapist.status,
        "version": therapist.version,
        "withdrawn_reason": therapist.withdrawn_reason,
        **therapist.profile.model_dump(),
        "rating_average": therapist.rating_average,
        "rating_count": therapist.rating_count,
        "created_at": therapist.created_at,
        "updated_at": therapist.updated_at,
    }


def public_view(
    therapist: StoredTherapist, histogram: dict[int, int], latest: list[dict[str, Any]]
) -> dict[str, Any]:
    """What anyone may read. The licence number is shown: Sweden's register of licensed
    health personnel is public, and a client can check it there. Capacity stays internal."""
    p = therapist.profile
    return {
        "therapist_id": therapist.therapist_id,
        "name": p.name,
        "profession": p.profession,
        "licensed": p.licensed,
        "licence_number": p.licence_number,
        "certifications": p.certifications,
        "methods": p.methods,
        "focus_areas": p.focus_areas,
        "age_groups": p.age_groups,
        "languages": p.languages,
        "modes": p.modes,
        "city": p.city,
        "practice_address": p.practice_address if "in_person" in p.modes else None,
        "time_zone": p.time_zone,
        "bio": p.bio,
        "accepting_new_clients": p.accepting_new_clients,
        "reviews": {
            "average": therapist.rating_average,
            "count": therapist.rating_count,
            "histogram": {str(stars): n for stars, n in histogram.items()},
            # No reviewer and no course: a review must not point at a client.
            "latest": [
                {
                    "review_id": r["review_id"],
                    "rating": r["rating"],
                    "text": r["text"],
                    "date": r["created_at"].date().isoformat(),
                }
                for r in latest
            ],
        },
    }


# ------------------------------------------------------------------------------ public


@router.get("/methods", response_model=Methods, tags=["reference"])
async def list_methods() -> dict[str, Any]:
    """The treatment methods: sessions, session length, phases, age group, who may offer."""
    return {"methods": methods_view()}


@router.get("/areas", response_model=Areas, tags=["reference"])
async def list_areas() -> dict[str, Any]:
    """The IPT problem areas and the other focus areas, named in Swedish and English."""
    return {"areas": areas_view()}


@router.get("/therapists", response_model=SearchPage, responses=problems(422), tags=["browse"])
async def search_therapists(request: Request) -> Response:
    """Published therapists: method, area, language, mode, city, age_group, accepting;
    sort=rating|name; page, page_size."""
    try:
        query = SearchQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    total, items = await published_catalog(request).search(pool_of(request), query)
    # Already valid JSON of a SearchPage: skip the response model's second validation.
    return Response(search_cards(request).page(total, query, items), media_type="application/json")


# Declared before /therapists/{therapist_id} so that "me" is not read as an id.
@router.get(
    "/therapists/me",
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 404),
    tags=["therapist"],
)
async def my_profile(request: Request, who: Therapist) -> dict[str, Any]:
    """The signed-in therapist's own profile, in any status."""
    async with pool_of(request).acquire() as conn:
        return own_view(await service.stored(conn, who.subject))


@router.patch(
    "/therapists/me",
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["therapist"],
)
async def edit_my_profile(
    request: Request, edit: ProfileSelfEdit, who: Therapist
) -> dict[str, Any]:
    """Edit your own bio, languages, meeting modes, city and practice address."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        return own_view(await service.self_edit(conn, who.subject, edit))


@router.get(
    "/therapists/{therapist_id}",
    response_model=PublicProfile,
    responses=problems(404, 422),
    tags=["browse"],
)
async def therapist_detail(request: Request, therapist_id: uuid.UUID) -> dict[str, Any]:
    """A published profile with credentials and its visible reviews."""
    async with pool_of(request).acquire() as conn:
        detail = await service.published_detail(conn, therapist_id, LATEST_REVIEWS)
    return public_view(detail.therapist, detail.histogram, detail.latest)


# ------------------------------------------------------------------------------- admin


@router.post(
    "/therapists",
    status_code=201,
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 409, 422),
    tags=["admin"],
)
async def create_therapist(request: Request, body: NewTherapist, who: Admin) -> dict[str, Any]:
    """Create a draft profile (published separately)."""
    profile = TherapistProfile.model_validate(body.model_dump(exclude={"therapist_id"}))
    async with pool_of(request).acquire() as conn, conn.transaction():
        return own_view(await service.create(conn, profile, body.therapist_id))


@router.get(
    "/therapists/{therapist_id}/profile",
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["admin"],
)
async def stored_profile(request: Request, therapist_id: uuid.UUID, who: Admin) -> dict[str, Any]:
    """The stored profile in any status."""
    async with pool_of(request).acquire() as conn:
        return own_view(await service.stored(conn, therapist_id))


@router.put(
    "/therapists/{therapist_id}",
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["admin"],
)
async def replace_therapist(
    request: Request, therapist_id: uuid.UUID, body: TherapistProfile, who: Admin
) -> dict[str, Any]:
    """Replace the whole profile; a published one is announced again."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        return own_view(await service.replace_profile(conn, therapist_id, body))


@router.patch(
    "/therapists/{therapist_id}",
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["admin"],
)
async def amend_therapist(
    request: Request,
    therapist_id: uuid.UUID,
    who: Admin,
    changes: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Change some fields; the whole profile is checked again."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        return own_view(await service.amend(conn, therapist_id, changes))


@router.post(
    "/therapists/{therapist_id}/publish",
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["admin"],
)
async def publish_therapist(
    request: Request, therapist_id: uuid.UUID, who: Admin
) -> dict[str, Any]:
    """Open the profile for search, matching and booking (again)."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        return own_view(await service.publish(conn, therapist_id))


@router.post(
    "/therapists/{therapist_id}/withdraw",
    response_model=OwnProfile,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["admin"],
)
async def withdraw_therapist(
    request: Request, therapist_id: uuid.UUID, body: Withdrawal, who: Admin
) -> dict[str, Any]:
    """Take a published profile out of search, matching and booking."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        return own_view(await service.withdraw(conn, therapist_id, body.reason))


@router.post(
    "/reviews/{review_id}/hide",
    response_model=HiddenReview,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["admin"],
)
async def hide_review(request: Request, review_id: uuid.UUID, who: Admin) -> dict[str, Any]:
    """Hide a review: it no longer shows or counts in the rating."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        therapist = await service.hide_review(conn, review_id, who.subject)
    return {
        "review_id": review_id,
        "hidden": True,
        "therapist_id": therapist.therapist_id,
        "rating_average": therapist.rating_average,
        "rating_count": therapist.rating_count,
    }


# ------------------------------------------------------------------------------ client


@router.post(
    "/therapists/{therapist_id}/reviews",
    status_code=201,
    response_model=PostedReview,
    responses=problems(*SIGNED_IN, 404, 409, 422),
    tags=["client"],
)
async def review_therapist(
    request: Request, therapist_id: uuid.UUID, body: NewReview, who: Client
) -> dict[str, Any]:
    """Review the therapist of your completed course, once per course.

    A course that is not yours answers 404 exactly like an unknown one.
    """
    async with pool_of(request).acquire() as conn, conn.transaction():
        posted = await service.post_review(
            conn, who.subject, therapist_id, body.course_id, body.rating, body.text
        )
    return {
        "review_id": posted.review_id,
        "therapist_id": therapist_id,
        "course_id": body.course_id,
        "rating": body.rating,
        "text": body.text,
        "rating_average": posted.therapist.rating_average,
        "rating_count": posted.therapist.rating_count,
    }
