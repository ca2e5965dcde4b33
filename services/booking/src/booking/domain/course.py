"""A treatment course and its sessions as pure state transitions (docs/domain.md, Booking).

Every function takes a `Course` and returns a new one; nothing is stored here.

Numbering. Each session takes a place (number) 1..planned in the plan, and has the phase of
that place (`Method.phase_of`). A place is held by a booked or attended session and by a
missed one (late cancellation, no-show): missed sessions count as used. A free cancellation
gives the place back. A new booking takes the lowest free place, so a course never has two
live sessions with one number and never books beyond its plan.

Concluding phase. A course completes only when every concluding place has been held
(attended). A missed concluding session (no-show or late cancellation) stays recorded as
missed but gives its place back for one make-up session: otherwise one missed ending would
make completion impossible. So a missed concluding session's number can appear twice: on the
missed record and on its make-up.

PHQ-9. Required at the first held session (the start) and at the last held session once the
concluding phase is complete (the final); it may be recorded at any held session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from booking.domain.clock import as_utc
from booking.domain.errors import (
    Conflict,
    CourseClosed,
    CourseFull,
    InvalidCourse,
    InvalidInput,
    Phq9Required,
    SessionStateConflict,
)
from booking.domain.policy import ChangeVerdict
from contracts.events import EndReason
from contracts.methods import METHODS, Method
from contracts.phq9 import course_outcome, severity_band
from contracts.vocabulary import Actor, CourseOutcome, MethodCode, Phase, SeverityBand

SessionStatus = Literal["booked", "cancelled", "late_cancelled", "attended", "no_show"]
CourseStatus = Literal["active", "completed", "ended_early"]
Attendance = Literal["attended", "no_show"]
MISSED: frozenset[SessionStatus] = frozenset({"late_cancelled", "no_show"})
# Who may end a course early, and for which reason (a switch of therapist is the system's).
END_REASONS_BY: dict[Actor, frozenset[EndReason]] = {
    "client": frozenset({"client_withdrew", "other"}),
    "therapist": frozenset(
        {"therapist_ended", "client_withdrew", "referred_elsewhere", "no_shows", "other"}
    ),
    "system": frozenset({"switched_therapist"}),
}


@dataclass(frozen=True)
class CourseSession:
    session_id: uuid.UUID
    number: int
    phase: Phase
    starts_at: datetime
    status: SessionStatus = "booked"
    phq9_total: int | None = None

    @property
    def holds_place(self) -> bool:
        """Whether this session keeps its number from being booked again (module doc)."""
        if self.status in ("booked", "attended"):
            return True
        return self.status in MISSED and self.phase != "concluding"


@dataclass(frozen=True)
class Course:
    method: MethodCode
    planned_sessions: int
    session_minutes: int
    sessions: tuple[CourseSession, ...] = ()
    status: CourseStatus = "active"
    end_reason: EndReason | None = None

    # The method's ranges are checked where a plan is made (`new_course`, `replan`), not on
    # every course read back: a range narrowed later must not lock the courses planned
    # within the old one (no booking, cancelling, attendance or ending for them).
    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidCourse("unknown_method", f"{self.method!r} is not a method we offer.")

    @property
    def method_data(self) -> Method:
        return METHODS[self.method]

    @property
    def concluding_numbers(self) -> range:
        return range(
            self.planned_sessions - self.method_data.concluding_sessions + 1,
            self.planned_sessions + 1,
        )

    def session(self, session_id: uuid.UUID) -> CourseSession:
        for session in self.sessions:
            if session.session_id == session_id:
                return session
        raise InvalidInput("unknown_session", "No such session in this course.")


@dataclass(frozen=True)
class Completion:
    outcome: CourseOutcome
    sessions_held: int
    start_band: SeverityBand
    final_band: SeverityBand


def new_course(
    method: MethodCode, planned_sessions: int | None = None, session_minutes: int | None = None
) -> Course:
    """A course with the method's defaults where the match did not choose."""
    if method not in METHODS:
        raise InvalidCourse("unknown_method", f"{method!r} is not a method we offer.")
    data = METHODS[method]
    planned_sessions = data.default_sessions if planned_sessions is None else planned_sessions
    session_minutes = data.default_minutes if session_minutes is None else session_minutes
    _check_plan(data, planned_sessions, session_minutes)
    return Course(method=method, planned_sessions=planned_sessions, session_minutes=session_minutes)


def _check_plan(method: Method, planned_sessions: int | None, session_minutes: int | None) -> None:
    """InvalidCourse unless the plan's sessions and minutes (those given) are in the range."""
    if planned_sessions is not None and not (
        method.min_sessions <= planned_sessions <= method.max_sessions
    ):
        raise InvalidCourse(
            "planned_sessions_out_of_range",
            f"{method.code} plans {method.min_sessions}-{method.max_sessions} sessions,"
            f" not {planned_sessions}.",
        )
    if session_minutes is not None and not (
        method.min_minutes <= session_minutes <= method.max_minutes
    ):
        raise InvalidCourse(
            "session_minutes_out_of_range",
            f"{method.code} sessions last {method.min_minutes}-{method.max_minutes} minutes,"
            f" not {session_minutes}.",
        )


def replan(
    course: Course, planned_sessions: int | None = None, session_minutes: int | None = None
) -> Course:
    """The therapist adjusts the plan within the method's range. Phases follow the new plan
    (a longer plan moves the concluding phase later); places already held must stay inside
    it. A shorter plan may be what completes the course."""
    _require_active(course)
    _check_plan(course.method_data, planned_sessions, session_minutes)  # what changes
    changed = replace(
        course,
        planned_sessions=course.planned_sessions if planned_sessions is None else planned_sessions,
        session_minutes=course.session_minutes if session_minutes is None else session_minutes,
    )
    held = [session.number for session in course.sessions if session.holds_place]
    if held and max(held) > changed.planned_sessions:
        raise Conflict(
            "plan_below_booked",
            f"Session {max(held)} is already booked or held; plan at least {max(held)} sessions.",
        )
    sessions = tuple(replace(s, phase=phase_of(changed, s.number)) for s in course.sessions)
    return _settle(replace(changed, sessions=sessions))


def phase_of(course: Course, number: int) -> Phase:
    return course.method_data.phase_of(number, course.planned_sessions)


def sessions_held(course: Course) -> int:
    return sum(session.status == "attended" for session in course.sessions)


def next_number(course: Course) -> int:
    """The lowest place in the plan that no session holds; CourseFull when none is left."""
    held = {session.number for session in course.sessions if session.holds_place}
    for number in range(1, course.planned_sessions + 1):
        if number not in held:
            return number
    raise CourseFull(course.planned_sessions)


def check_room(course: Course) -> None:
    """CourseClosed unless the course is active; CourseFull when no place in it is free.
    Asked before the time is (a full course is told so, not offered other times)."""
    _require_active(course)
    next_number(course)


def book_session(
    course: Course, session_id: uuid.UUID, starts_at: datetime
) -> tuple[Course, CourseSession]:
    """Add a booked session at the next free place (the slot itself is checked by availability)."""
    _require_active(course)
    number = next_number(course)
    session = CourseSession(
        session_id=session_id,
        number=number,
        phase=phase_of(course, number),
        starts_at=as_utc(starts_at, "session start"),
    )
    return replace(course, sessions=(*course.sessions, session)), session


def cancel_session(course: Course, session_id: uuid.UUID, verdict: ChangeVerdict) -> Course:
    """Cancelled (place given back) or late_cancelled (counts as used), as the verdict says."""
    _require_active(course)
    session = _booked(course, session_id)
    status: SessionStatus = "late_cancelled" if verdict.counts_as_used else "cancelled"
    # Cancelling the one session still booked may be what completes the course.
    return _settle(_put(course, replace(session, status=status)))


def reschedule_session(
    course: Course,
    session_id: uuid.UUID,
    new_starts_at: datetime,
    verdict: ChangeVerdict,
    left_behind_id: uuid.UUID,
) -> tuple[Course, CourseSession]:
    """Move a session. A free move keeps the session and its number; a move that counts as
    used leaves a late cancellation behind (recorded as `left_behind_id`, at the old time and
    number) and the moved session takes the next place. Either way the moved session keeps
    its id: calendars and reminders follow the appointment."""
    _require_active(course)
    session = _booked(course, session_id)
    new_starts_at = as_utc(new_starts_at, "new start")
    if not verdict.counts_as_used:
        moved = replace(session, starts_at=new_starts_at)
        return _put(course, moved), moved
    left_behind = replace(session, session_id=left_behind_id, status="late_cancelled")
    others = tuple(s for s in course.sessions if s.session_id != session_id)
    course = replace(course, sessions=(*others, left_behind))
    return book_session(course, session_id, new_starts_at)


def record_attendance(
    course: Course,
    session_id: uuid.UUID,
    attendance: Attendance,
    now: datetime,
    phq9_total: int | None = None,
) -> Course:
    """The therapist records a started session as attended or no-show; completes the course
    when this was the last concluding session to be held."""
    _require_active(course)
    session = _booked(course, session_id)
    if as_utc(now, "current time") < session.starts_at:
        raise SessionStateConflict(
            "session_not_started", "Attendance is recorded once the session has started."
        )
    if attendance == "no_show" and phq9_total is not None:
        raise InvalidInput("phq9_without_attendance", "A PHQ-9 is recorded at a held session.")
    if phq9_total is not None:
        severity_band(phq9_total)  # raises on a total outside 0-27
    updated = _put(course, replace(session, status=attendance, phq9_total=phq9_total))
    _require_phq9_where_due(updated)
    return _settle(updated)


def record_phq9(course: Course, session_id: uuid.UUID, total: int) -> Course:
    """Record (or correct) the PHQ-9 total of a held session."""
    _require_active(course)
    session = course.session(session_id)
    if session.status != "attended":
        raise SessionStateConflict("session_not_held", "A PHQ-9 is recorded at a held session.")
    severity_band(total)
    return _settle(_put(course, replace(session, phq9_total=total)))


def completion(course: Course) -> Completion | None:
    """The completion facts once every concluding place is held, nothing is still booked and
    the start and final PHQ-9 are recorded; None before that or for a course ended early."""
    if course.status == "ended_early":
        return None
    attended = sorted(
        (s for s in course.sessions if s.status == "attended"), key=lambda s: s.starts_at
    )
    held_numbers = {session.number for session in attended}
    if not set(course.concluding_numbers) <= held_numbers:
        return None
    if any(session.status == "booked" for session in course.sessions):
        return None
    start, final = attended[0].phq9_total, attended[-1].phq9_total
    if start is None or final is None:
        return None
    return Completion(
        outcome=course_outcome(start, final),
        sessions_held=len(attended),
        start_band=severity_band(start),
        final_band=severity_band(final),
    )


def end_early(course: Course, reason: EndReason, by: Actor = "system") -> Course:
    """Stop an active course before completion; sessions still booked are cancelled (free)."""
    if reason not in END_REASONS_BY.get(by, frozenset()):
        allowed = ", ".join(sorted(END_REASONS_BY.get(by, ()))) or "none"
        raise InvalidInput(
            "end_reason_not_allowed", f"A {by} ends a course with one of: {allowed}."
        )
    _require_active(course)
    sessions = tuple(
        replace(s, status="cancelled") if s.status == "booked" else s for s in course.sessions
    )
    return replace(course, sessions=sessions, status="ended_early", end_reason=reason)


def _require_active(course: Course) -> None:
    if course.status != "active":
        raise CourseClosed(course.status)


def _booked(course: Course, session_id: uuid.UUID) -> CourseSession:
    session = course.session(session_id)
    if session.status != "booked":
        raise SessionStateConflict(
            "session_not_booked", f"Session {session.number} is {session.status}, not booked."
        )
    return session


def _put(course: Course, changed: CourseSession) -> Course:
    sessions = tuple(changed if s.session_id == changed.session_id else s for s in course.sessions)
    return replace(course, sessions=sessions)


def _require_phq9_where_due(course: Course) -> None:
    attended = sorted(
        (s for s in course.sessions if s.status == "attended"), key=lambda s: s.starts_at
    )
    if attended and attended[0].phq9_total is None:
        raise Phq9Required(
            f"Record a PHQ-9 at session {attended[0].number}: the first held session."
        )
    concluded = set(course.concluding_numbers) <= {s.number for s in attended}
    if concluded and attended[-1].phq9_total is None:
        raise Phq9Required(
            f"Record a PHQ-9 at session {attended[-1].number}: the last session of the course."
        )


def _settle(course: Course) -> Course:
    return replace(course, status="completed") if completion(course) is not None else course
