"""Booking's domain errors: a short machine code for clients and a human message to show.

Each is one of the chassis's kinds, which `chassis.http.status_of` maps to HTTP statuses
for every service: `InvalidInput` is an `Invalid` (the request can never be right: 422),
`Conflict` a chassis `Conflict` (a valid request the current state refuses: 409).
"""

from __future__ import annotations

from chassis import errors as kinds


class DomainError(kinds.DomainError):
    """Base of every booking rule violation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class InvalidInput(DomainError, kinds.Invalid):
    """The input breaks a rule whatever the state is (HTTP 422)."""


class InvalidAvailability(InvalidInput):
    """Working hours, exceptions, buffer, notice, horizon or time zone are not acceptable."""


class InvalidCourse(InvalidInput):
    """Planned sessions or session length outside the method's range, or an unknown method."""


class Phq9Required(InvalidInput):
    """A PHQ-9 total must be recorded at the first held session and at the final one."""

    def __init__(self, message: str) -> None:
        super().__init__("phq9_required", message)


class Conflict(DomainError, kinds.Conflict):
    """A valid request that the current state refuses (HTTP 409)."""


class SlotUnavailable(Conflict):
    """The requested start is not a free slot; `code` says why (too_soon, taken, ...)."""


class SessionStarted(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "session_started", "The session has already started and can no longer be changed."
        )


class CourseFull(Conflict):
    def __init__(self, planned: int) -> None:
        super().__init__(
            "course_full", f"All {planned} planned sessions of this course are already booked."
        )


class CourseClosed(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__("course_closed", f"The course is {status}; it can no longer change.")


class SessionStateConflict(Conflict):
    """The session is not in a state that allows this change (for example already cancelled)."""
