"""The catalog's HTTP answers: one response model per route, as the OpenAPI document shows
them to the frontends (`api.py` fills them)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from catalog.domain.profile import ProfileStatus
from chassis.http import Timestamp
from contracts.vocabulary import AgeGroup, FocusArea, MeetingMode, MethodCode, Profession


class Range(BaseModel):
    min: int
    max: int


class SessionRange(Range):
    default: int


class PhaseSessions(BaseModel):
    phase: Literal["initial", "middle", "concluding"]
    sessions: int | None


class MethodInfo(BaseModel):
    code: MethodCode
    name_sv: str
    name_en: str
    age_group: AgeGroup
    min_age: int
    max_age: int | None
    sessions: SessionRange
    session_minutes: Range
    phases: list[PhaseSessions]
    eligible_professions: list[Profession]
    certification_qualifies: bool
    guardian_informed: bool


class Methods(BaseModel):
    methods: list[MethodInfo]


class AreaInfo(BaseModel):
    code: FocusArea
    kind: Literal["problem_area", "focus_area"]
    name_sv: str
    name_en: str


class Areas(BaseModel):
    areas: list[AreaInfo]


class OwnProfile(BaseModel):
    """The whole stored profile with its status: for admins and the therapist themself. Not
    a `TherapistProfile`: an answer shows the profile as stored, and the rules of writing one
    are checked when it is written (a profile stored before a rule was tightened is shown)."""

    name: str
    profession: Profession
    licence_number: str | None
    certifications: list[MethodCode]
    methods: list[MethodCode]
    age_groups: list[AgeGroup]
    focus_areas: list[FocusArea]
    languages: list[str]
    modes: list[MeetingMode]
    city: str | None
    practice_address: str | None
    bio: str
    capacity: int
    accepting_new_clients: bool
    time_zone: str
    therapist_id: uuid.UUID
    status: ProfileStatus
    version: int
    withdrawn_reason: str | None
    rating_average: float | None
    rating_count: int
    created_at: Timestamp
    updated_at: Timestamp


class LatestReview(BaseModel):
    """No reviewer and no course: a review must not point at a client."""

    review_id: uuid.UUID
    rating: int
    text: str
    date: str


class ReviewsOverview(BaseModel):
    average: float | None
    count: int
    histogram: dict[str, int]
    latest: list[LatestReview]


class PublicProfile(BaseModel):
    """What anyone may read of a published therapist (capacity stays internal)."""

    therapist_id: uuid.UUID
    name: str
    profession: Profession
    licensed: bool
    licence_number: str | None
    certifications: list[MethodCode]
    methods: list[MethodCode]
    focus_areas: list[FocusArea]
    age_groups: list[AgeGroup]
    languages: list[str]
    modes: list[MeetingMode]
    city: str | None
    practice_address: str | None
    time_zone: str
    bio: str
    accepting_new_clients: bool
    reviews: ReviewsOverview


class HiddenReview(BaseModel):
    review_id: uuid.UUID
    hidden: bool
    therapist_id: uuid.UUID
    rating_average: float | None
    rating_count: int


class PostedReview(BaseModel):
    review_id: uuid.UUID
    therapist_id: uuid.UUID
    course_id: uuid.UUID
    rating: int
    text: str
    rating_average: float | None
    rating_count: int
