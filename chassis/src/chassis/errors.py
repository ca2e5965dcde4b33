"""The domain's refusals, in four kinds every service shares (and one for "not now").

A rule that refuses raises one of the kinds (or a service's subclass of one): a stable
machine `code`, a plain `message` a person may be shown, and any details (`extra`) that
go into the answer. The errors know nothing of HTTP: `chassis.http.status_of` maps the
kinds to statuses in one place, for every service.

- `Invalid`    — the request can never be right, whatever the state (422);
- `NotAllowed` — this person may not do this (403);
- `NotFound`   — no such thing, or somebody else's: never reveal that it exists (404);
- `Conflict`   — a valid request the current state refuses (409).

And one that is no rule's: `Unavailable` — something the answer needs (another service)
cannot be reached now; try again (503).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule refused. Raise one of the four kinds below; this base answers as `Invalid`."""

    code: str = "invalid"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.message, **self.extra}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class Invalid(DomainError):
    """The request breaks a rule whatever the state is."""

    code = "invalid"


class NotAllowed(DomainError):
    """The person may not do this (their role or their relation to the thing)."""

    code = "not_allowed"


class NotFound(DomainError):
    """Also the answer for somebody else's data: never reveal that it exists."""

    code = "not_found"


class Conflict(DomainError):
    """A valid request the current state refuses."""

    code = "conflict"


class Unavailable(DomainError):
    """Something this answer needs (another service) cannot be reached now: try again."""

    code = "unavailable"
