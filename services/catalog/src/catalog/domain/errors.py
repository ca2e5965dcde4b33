"""Domain errors of catalog: a stable machine code plus a plain message.

Each is one of the chassis's four kinds (`Invalid`, `NotAllowed`, `NotFound`, `Conflict`),
which `chassis.http.status_of` maps to HTTP statuses for every service; the message is
written for a person and may be shown as is. `field` (when set) names the input at fault.
"""

from __future__ import annotations

from typing import Any

from chassis.errors import Conflict, Invalid, NotAllowed, NotFound
from chassis.errors import DomainError as _ChassisDomainError


class DomainError(_ChassisDomainError):
    """A catalog rule refused the request (each subclass is also one of the four kinds)."""

    code = "domain_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        extra: dict[str, Any] = {"field": field} if field is not None else {}
        super().__init__(message, code=code, **extra)
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class ProfileInvalid(DomainError, Invalid):
    """A profile (after an edit) breaks one or more profile rules.

    `errors` holds one entry per broken rule: `{"field", "code", "message"}`; it is also in
    the response body.
    """

    code = "profile_invalid"

    def __init__(self, errors: list[dict[str, str]]):
        message = "; ".join(
            f"{e['field']}: {e['message']}" if e.get("field") else e["message"] for e in errors
        )
        super().__init__(message or "The profile is not valid")
        self.errors = errors
        self.extra["errors"] = errors


class ProfileIncomplete(DomainError, Invalid):
    """The profile is valid but lacks something needed before publishing."""

    code = "profile_incomplete"


class InvalidTransition(DomainError, Conflict):
    """The profile's status does not allow this change."""

    code = "invalid_transition"


class ReviewNotAllowed(DomainError, NotAllowed):
    """The person may not review this course (no completed course, not theirs, ...)."""

    code = "review_not_allowed"


class NoReviewRight(ReviewNotAllowed, NotFound):
    """No completed course of this client has that id.

    Answered 404 alike whether the course is unknown, not completed or somebody else's: the
    answer must not tell a client that another person's course exists (docs/domain.md, Privacy).
    """

    code = "no_review_right"


class ReviewConflict(DomainError, Conflict):
    """The course has already been reviewed."""

    code = "already_reviewed"


class ReviewInvalid(DomainError, Invalid):
    """Rating or text out of bounds."""

    code = "review_invalid"
