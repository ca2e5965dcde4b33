"""Domain refusals: four kinds (and "not now"), mapped to HTTP statuses in one place."""

from __future__ import annotations

import pytest

from chassis.errors import Conflict, DomainError, Invalid, NotAllowed, NotFound, Unavailable
from chassis.http import status_of
from chassis.testing.waiting import until


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Invalid("no"), 422),
        (NotAllowed("no"), 403),
        (NotFound("no"), 404),
        (Conflict("no"), 409),
        (Unavailable("later"), 503),
        (DomainError("no"), 422),
    ],
)
def test_each_kind_has_its_status(error: DomainError, status: int) -> None:
    assert status_of(error) == status


def test_a_refusal_that_must_not_reveal_what_exists_answers_404() -> None:
    class NotYours(NotAllowed, NotFound):
        code = "not_yours"

    assert status_of(NotYours("no")) == 404


def test_the_body_carries_code_message_and_details() -> None:
    error = Conflict("That time is taken.", code="taken", alternatives=[])
    assert error.body() == {"code": "taken", "detail": "That time is taken.", "alternatives": []}


async def test_until_gives_what_the_check_found_and_fails_with_the_given_kind() -> None:
    answers = iter([None, 0, "found"])
    assert await until("an answer", lambda: next(answers), every=0) == "found"

    class JourneyFailed(AssertionError):
        pass

    async def never() -> bool:
        return False

    with pytest.raises(JourneyFailed, match="timed out waiting for nothing"):
        await until("nothing", never, timeout=0, failure=JourneyFailed)
