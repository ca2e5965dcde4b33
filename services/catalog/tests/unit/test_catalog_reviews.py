"""Verified reviews and the rating aggregate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from catalog.domain.errors import DomainError, ReviewConflict, ReviewInvalid, ReviewNotAllowed
from catalog.domain.reviews import (
    Review,
    ReviewInput,
    ReviewRight,
    check_review,
    rating_summary,
    review_right_from,
    to_review_published_event,
    visible_ratings,
)
from chassis.http import status_of
from contracts.events import CourseCompleted

CLIENT, THERAPIST, COURSE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
RIGHT = ReviewRight(course_id=COURSE, client_id=CLIENT, therapist_id=THERAPIST)


def check(
    right: ReviewRight | None = RIGHT,
    existing: bool = False,
    client: uuid.UUID = CLIENT,
    therapist: uuid.UUID = THERAPIST,
    rating: int = 5,
    text: str = "Mycket bra samtal.",
) -> object:
    return check_review(right, existing, client, therapist, rating, text)


def test_a_completed_course_may_be_reviewed_once() -> None:
    accepted = check(text="  Tack för allt!  ", rating=4)
    assert accepted == check_review(RIGHT, False, CLIENT, THERAPIST, 4, "Tack för allt!")
    assert accepted.course_id == COURSE  # type: ignore[attr-defined]
    assert accepted.text == "Tack för allt!"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "kind", "code", "message"),
    [
        (
            {"right": None},
            ReviewNotAllowed,
            "no_review_right",
            "once your course with them has completed",
        ),
        # Somebody else's course answers exactly like an unknown one (privacy).
        (
            {"client": uuid.uuid4()},
            ReviewNotAllowed,
            "no_review_right",
            "once your course with them has completed",
        ),
        ({"therapist": uuid.uuid4()}, ReviewNotAllowed, "other_therapist", "another therapist"),
        (
            {"existing": True},
            ReviewConflict,
            "already_reviewed",
            "You have already reviewed this course",
        ),
        ({"rating": 0}, ReviewInvalid, "rating_out_of_range", "from 1 to 5"),
        ({"rating": 6}, ReviewInvalid, "rating_out_of_range", "from 1 to 5"),
        ({"rating": True}, ReviewInvalid, "rating_out_of_range", "from 1 to 5"),
        ({"text": ""}, ReviewInvalid, "review_text_empty", "must not be empty"),
        ({"text": "   \n "}, ReviewInvalid, "review_text_empty", "must not be empty"),
        ({"text": "x" * 2001}, ReviewInvalid, "review_text_too_long", "at most 2000"),
    ],
)
def test_each_review_rule_refuses_with_its_own_code(
    kwargs: dict[str, object], kind: type[DomainError], code: str, message: str
) -> None:
    with pytest.raises(kind) as info:
        check(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == code
    assert message in info.value.message


def test_unknown_and_somebody_elses_course_answer_alike_with_404() -> None:
    refusals = []
    for kwargs in ({"right": None}, {"client": uuid.uuid4()}):
        with pytest.raises(ReviewNotAllowed) as info:
            check(**kwargs)  # type: ignore[arg-type]
        refusals.append((status_of(info.value), info.value.code, info.value.message))
    assert refusals[0] == refusals[1]
    assert refusals[0][0] == 404


def test_bounds_are_inclusive() -> None:
    for rating in (1, 5):
        check(rating=rating)
    check(text="x" * 2000)
    check(text="  " + "x" * 2000 + "  ")  # trimmed first


def test_review_right_comes_from_course_completed() -> None:
    event = CourseCompleted(
        course_id=COURSE,
        client_id=CLIENT,
        therapist_id=THERAPIST,
        method="IPT",
        sessions_held=12,
        start_severity_band="moderate",
        final_severity_band="minimal",
        outcome="remission",
        completed_at=datetime(2025, 5, 1, tzinfo=UTC),
    )
    assert review_right_from(event) == RIGHT


def test_review_input_model() -> None:
    assert ReviewInput.model_validate({"rating": 3, "text": " ok "}).text == "ok"
    with pytest.raises(ValidationError) as info:
        ReviewInput.model_validate({"rating": 0, "text": " "})
    errors = {e["loc"][0]: e["msg"] for e in info.value.errors()}
    assert "Rating must be" in errors["rating"]
    assert "Review text must not be empty" in errors["text"]
    with pytest.raises(ValidationError):
        ReviewInput.model_validate({"rating": 6, "text": "x"})
    with pytest.raises(ValidationError):
        ReviewInput.model_validate({"rating": 4, "text": "x" * 2001})


def _review(rating: int, hidden: bool = False) -> Review:
    return Review(uuid.uuid4(), uuid.uuid4(), THERAPIST, rating, hidden)


def test_rating_summary_counts_visible_reviews_only() -> None:
    reviews = [_review(5), _review(4), _review(4), _review(1, hidden=True), _review(2, hidden=True)]
    average, count, histogram = rating_summary(visible_ratings(reviews))
    assert average == 4.33
    assert count == 3
    assert histogram == {1: 0, 2: 0, 3: 0, 4: 2, 5: 1}


def test_rating_summary_rounds_half_up_and_handles_nothing() -> None:
    assert rating_summary([]) == rating_summary(visible_ratings([_review(3, hidden=True)]))
    average, count, histogram = rating_summary([])
    assert (average, count) == (None, 0)
    assert histogram == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
    # 1,2,2,2,2,2,2,2 -> 15/8 = 1.875 -> 1.88 (half up, not banker's)
    assert rating_summary([1, 2, 2, 2, 2, 2, 2, 2]).average == 1.88
    assert rating_summary([5]).average == 5.0
    with pytest.raises(ValueError):
        rating_summary([0])


def test_review_published_event_carries_numbers_not_text() -> None:
    accepted = check_review(RIGHT, False, CLIENT, THERAPIST, 5, "Hemlig text")
    review_id = uuid.uuid4()
    event = to_review_published_event(review_id, accepted, rating_summary([5, 4]))
    dumped = event.model_dump(mode="json")
    assert dumped["rating_average"] == 4.5 and dumped["rating_count"] == 2
    assert dumped["review_id"] == str(review_id)
    assert "Hemlig text" not in str(dumped)
