"""Verified reviews (docs/domain.md, Therapists) and the rating aggregate.

- Only a client whose course with that therapist has completed may review: the catalog
  learns this from `CourseCompleted` as a `ReviewRight`.
- One review per course.
- Rating 1..5 (whole stars); text 1..2000 characters after trimming.
- The rating of a therapist counts visible reviews only; a hidden (moderated) review
  keeps its text on file but no longer counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from catalog.domain.errors import NoReviewRight, ReviewConflict, ReviewInvalid, ReviewNotAllowed
from catalog.domain.values import text as bounded_text
from contracts.events import CourseCompleted, ReviewPublished
from contracts.inputs import Text

RATING_MIN, RATING_MAX = 1, 5
REVIEW_TEXT_MAX = 2000

MSG_NO_RIGHT = (
    "No completed course of yours has this id: you can review a therapist once your course "
    "with them has completed"
)
MSG_OTHER_THERAPIST = "This course was with another therapist; review the therapist you saw"
MSG_ALREADY_REVIEWED = "You have already reviewed this course"
MSG_RATING = f"Rating must be a whole number of stars from {RATING_MIN} to {RATING_MAX}"
MSG_TEXT_EMPTY = "Review text must not be empty"
MSG_TEXT_LONG = f"Review text must be at most {REVIEW_TEXT_MAX} characters"


@dataclass(frozen=True)
class ReviewRight:
    """A completed course: its client may review its therapist, once."""

    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID


def review_right_from(event: CourseCompleted) -> ReviewRight:
    return ReviewRight(event.course_id, event.client_id, event.therapist_id)


class ReviewInput(BaseModel):
    """A review as the client writes it (request body)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rating: int
    text: Annotated[Text, bounded_text("Review text", max_length=REVIEW_TEXT_MAX, required=True)]

    @field_validator("rating", mode="wrap")
    @classmethod
    def _rating(cls, value: Any, handler: Any) -> int:
        try:
            number: int = handler(value)
        except ValidationError:
            number = 0
        if not RATING_MIN <= number <= RATING_MAX:
            raise PydanticCustomError("rating_range", MSG_RATING)
        return number


@dataclass(frozen=True)
class AcceptedReview:
    """A review that passed every rule: ready to store (the text is trimmed)."""

    course_id: uuid.UUID
    client_id: uuid.UUID
    therapist_id: uuid.UUID
    rating: int
    text: str


def check_review(
    right: ReviewRight | None,
    existing_review_for_course: bool,
    client_id: uuid.UUID,
    therapist_id: uuid.UUID,
    rating: int,
    text: str,
) -> AcceptedReview:
    """Check a review against every rule, in order; raise the first that breaks.

    `right` is the `ReviewRight` of the course being reviewed (None: no completed course
    known). Codes: no_review_right (404: unknown and somebody else's course answer alike),
    other_therapist (403), already_reviewed (409), rating_out_of_range, review_text_empty,
    review_text_too_long (422).
    """
    if right is None or right.client_id != client_id:
        raise NoReviewRight(MSG_NO_RIGHT)
    if right.therapist_id != therapist_id:
        raise ReviewNotAllowed(MSG_OTHER_THERAPIST, code="other_therapist")
    if existing_review_for_course:
        raise ReviewConflict(MSG_ALREADY_REVIEWED, code="already_reviewed")
    if isinstance(rating, bool) or not isinstance(rating, int):
        raise ReviewInvalid(MSG_RATING, code="rating_out_of_range", field="rating")
    if not RATING_MIN <= rating <= RATING_MAX:
        raise ReviewInvalid(MSG_RATING, code="rating_out_of_range", field="rating")
    body = text.strip()
    if not body:
        raise ReviewInvalid(MSG_TEXT_EMPTY, code="review_text_empty", field="text")
    if len(body) > REVIEW_TEXT_MAX:
        raise ReviewInvalid(MSG_TEXT_LONG, code="review_text_too_long", field="text")
    return AcceptedReview(right.course_id, client_id, therapist_id, rating, body)


# --------------------------------------------------------------------------- rating


@dataclass(frozen=True)
class Review:
    """A stored review as the aggregate sees it."""

    review_id: uuid.UUID
    course_id: uuid.UUID
    therapist_id: uuid.UUID
    rating: int
    hidden: bool = False


@dataclass(frozen=True)
class RatingSummary:
    """Unpacks as `(average, count, histogram)`."""

    average: float | None  # rounded half up to 2 decimals; None when nothing counts
    count: int
    histogram: dict[int, int]  # stars 1..5 -> number of visible reviews, every key present

    def __iter__(self) -> Iterator[Any]:
        return iter((self.average, self.count, self.histogram))


def visible_ratings(reviews: Iterable[Review]) -> list[int]:
    return [r.rating for r in reviews if not r.hidden]


def rating_summary(ratings: Iterable[int]) -> RatingSummary:
    """Average (2 decimals, half up), count and 1..5 histogram of visible ratings."""
    histogram = {stars: 0 for stars in range(RATING_MIN, RATING_MAX + 1)}
    for rating in ratings:
        if rating not in histogram:
            raise ValueError(f"rating {rating!r} is outside {RATING_MIN}..{RATING_MAX}")
        histogram[rating] += 1
    count = sum(histogram.values())
    if count == 0:
        return RatingSummary(None, 0, histogram)
    total = sum(stars * n for stars, n in histogram.items())
    average = (Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return RatingSummary(float(average), count, histogram)


def to_review_published_event(
    review_id: uuid.UUID, review: AcceptedReview, summary: RatingSummary
) -> ReviewPublished:
    """The event for a counted review: ids and numbers only (the text stays in catalog)."""
    if summary.average is None:
        raise ValueError("a published review must be counted in the summary")
    return ReviewPublished(
        review_id=review_id,
        therapist_id=review.therapist_id,
        course_id=review.course_id,
        rating=review.rating,
        rating_average=summary.average,
        rating_count=summary.count,
    )


__all__ = [
    "AcceptedReview",
    "RatingSummary",
    "Review",
    "ReviewInput",
    "ReviewRight",
    "check_review",
    "rating_summary",
    "review_right_from",
    "to_review_published_event",
    "visible_ratings",
]
