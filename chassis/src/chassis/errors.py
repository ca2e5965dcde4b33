"""Errors a frontend can show: a stable code, a plain message, an HTTP status."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 422
    code: str = "invalid"

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.message, **self.extra}


class NotFound(DomainError):
    """Also the answer for somebody else's data: never reveal that it exists."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Unavailable(DomainError):
    """Something this answer needs (another service) cannot be reached now: try again."""

    status = 503
    code = "unavailable"
