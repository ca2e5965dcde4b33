"""What every service's HTTP contract shares: the error bodies, timestamps as they go on
the wire, and the `responses=` a route declares for its errors.

The OpenAPI documents are what the frontends generate their clients from
(`tests/contracts/test_openapi_clients.py` does the same), so a route names its response
model and every error it can answer with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

from chassis.errors import Conflict, DomainError, Invalid, NotAllowed, NotFound, Unavailable

# The one place a domain refusal becomes an HTTP status. The first matching kind wins:
# NotFound first, so a refusal that must not reveal what exists (a NotAllowed that is
# also a NotFound) answers 404.
STATUSES: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (NotAllowed, 403),
    (Conflict, 409),
    (Invalid, 422),
    (Unavailable, 503),
)


def status_of(error: DomainError) -> int:
    """The HTTP status of a domain refusal, by its kind; 422 for the bare base."""
    for kind, status in STATUSES:
        if isinstance(error, kind):
            return status
    return 422


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# An aware timestamp, written as `datetime.isoformat()` writes it (`+00:00`, not `Z`): the
# answers keep the form they had before they were typed.
Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Problem(BaseModel):
    """A refusal a frontend can show: a stable `code` to branch on and a plain `detail`.
    Some codes carry more fields (e.g. `alternatives` with free slots for `taken`)."""

    model_config = ConfigDict(extra="allow")

    code: str
    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(Problem):
    """422: the request does not fit; `detail` names the first field, `errors` all of them."""

    errors: list[FieldProblem] = []


class AccessProblem(BaseModel):
    """401 (no valid token) or 403 (a role that may not do this)."""

    detail: str


_DESCRIPTIONS = {
    400: "The request cannot be applied",
    401: "No valid token",
    403: "The caller's role may not do this",
    404: "Not found, or not the caller's to see",
    409: "Conflicts with the current state",
    410: "Gone",
    422: "The request does not fit: the first wrong field is named",
    503: "Something the answer needs is unavailable now: try again shortly",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error statuses it answers with and their bodies."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model: type[BaseModel] = (
            AccessProblem
            if status in (401, 403)
            else ValidationProblem
            if status == 422
            else Problem
        )
        answers[status] = {"model": model, "description": _DESCRIPTIONS.get(status, "Refused")}
    return answers


# What a route behind a role answers besides its own errors.
SIGNED_IN = (401, 403)
