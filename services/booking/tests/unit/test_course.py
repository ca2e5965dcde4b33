"""A course's sessions: numbering, phases, PHQ-9, completion and ending early."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from booking.domain.course import (
    Completion,
    Course,
    book_session,
    cancel_session,
    check_room,
    completion,
    end_early,
    new_course,
    next_number,
    phase_of,
    record_attendance,
    record_phq9,
    replan,
    reschedule_session,
    sessions_held,
)
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

FIRST = datetime(2026, 2, 3, 9, tzinfo=UTC)
FREE = ChangeVerdict(late=False, counts_as_used=False, policy_version="2026-01")
LATE = ChangeVerdict(late=True, counts_as_used=True, policy_version="2026-01")
THERAPIST_LATE = ChangeVerdict(late=True, counts_as_used=False, policy_version="2026-01")


def ids(n: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=i + 1) for i in range(n)]


def booked(course: Course, n: int, offset: int = 0) -> tuple[Course, list[uuid.UUID]]:
    made = []
    for week in range(n):
        sid = uuid.UUID(int=1000 + offset + week)
        course, _ = book_session(course, sid, FIRST + timedelta(weeks=offset + week))
        made.append(sid)
    return course, made


def attend(course: Course, sid: uuid.UUID, phq9: int | None = None) -> Course:
    return record_attendance(
        course, sid, "attended", now=datetime(2030, 1, 1, tzinfo=UTC), phq9_total=phq9
    )


def no_show(course: Course, sid: uuid.UUID) -> Course:
    return record_attendance(course, sid, "no_show", now=datetime(2030, 1, 1, tzinfo=UTC))


def held_course(start: int, final: int, planned: int = 12) -> Course:
    course, sids = booked(new_course("IPT", planned), planned)
    course = attend(course, sids[0], start)
    for sid in sids[1:-1]:
        course = attend(course, sid)
    return attend(course, sids[-1], final)


# ----------------------------------------------------------------------------- creation


def test_defaults_come_from_the_method() -> None:
    assert (new_course("IPT").planned_sessions, new_course("IPT").session_minutes) == (12, 45)
    assert new_course("KBT").planned_sessions == 8
    assert new_course("IPT-A", 16, 60).planned_sessions == 16


@pytest.mark.parametrize(
    ("method", "planned", "minutes", "code"),
    [
        ("IPT", 11, 45, "planned_sessions_out_of_range"),
        ("IPT", 17, 45, "planned_sessions_out_of_range"),
        ("KBT", 21, 45, "planned_sessions_out_of_range"),
        ("IPT", 12, 44, "session_minutes_out_of_range"),
        ("IPT", 12, 61, "session_minutes_out_of_range"),
        ("DBT", 12, 45, "unknown_method"),
    ],
)
def test_course_out_of_method_range(method: str, planned: int, minutes: int, code: str) -> None:
    with pytest.raises(InvalidCourse) as caught:
        new_course(method, planned, minutes)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_a_course_planned_before_a_range_was_narrowed_goes_on() -> None:
    """A course read back with a plan outside today's range (20 IPT sessions of 90 minutes,
    as a wider range once allowed) is booked and replanned; only what a replan changes must
    be inside the range."""
    course = Course(method="IPT", planned_sessions=20, session_minutes=90)
    course, _ = booked(course, 3)
    assert [s.number for s in course.sessions] == [1, 2, 3]
    assert replan(course, session_minutes=60).planned_sessions == 20
    with pytest.raises(InvalidCourse) as caught:
        replan(course, planned_sessions=18)
    assert caught.value.code == "planned_sessions_out_of_range"
    assert replan(course, planned_sessions=16).planned_sessions == 16


# ----------------------------------------------------------------------------- numbers and phases


@pytest.mark.parametrize(
    ("planned", "initial", "middle", "concluding"),
    [
        (12, [1, 2, 3], list(range(4, 10)), [10, 11, 12]),
        (16, [1, 2, 3], list(range(4, 14)), [14, 15, 16]),
    ],
)
def test_phases(planned: int, initial: list[int], middle: list[int], concluding: list[int]) -> None:
    course, _ = booked(new_course("IPT", planned), planned)
    by_phase = {
        phase: [s.number for s in course.sessions if s.phase == phase]
        for phase in ("initial", "middle", "concluding")
    }
    assert by_phase == {"initial": initial, "middle": middle, "concluding": concluding}
    assert [phase_of(course, n) for n in (1, planned)] == ["initial", "concluding"]


def test_cannot_book_beyond_planned_sessions() -> None:
    course, _ = booked(new_course("KBT", 8), 8)
    with pytest.raises(CourseFull) as caught:
        book_session(course, uuid.uuid4(), FIRST + timedelta(weeks=9))
    assert caught.value.code == "course_full"


def test_room_is_asked_of_the_course_alone() -> None:
    """`check_room`: what `book_session` refuses whatever the time (asked before the time)."""
    course, sids = booked(new_course("KBT", 8), 8)
    with pytest.raises(CourseFull):
        check_room(course)
    check_room(cancel_session(course, sids[3], FREE))  # a place given back: room again
    with pytest.raises(CourseClosed):
        check_room(held_course(15, 5))


def test_free_cancellation_gives_the_number_back() -> None:
    course, sids = booked(new_course("IPT"), 3)
    course = cancel_session(course, sids[1], FREE)
    assert course.session(sids[1]).status == "cancelled"
    assert next_number(course) == 2


def test_therapist_late_cancellation_gives_the_number_back() -> None:
    course, sids = booked(new_course("IPT"), 3)
    course = cancel_session(course, sids[2], THERAPIST_LATE)
    assert course.session(sids[2]).status == "cancelled"
    assert next_number(course) == 3


def test_late_cancellation_keeps_its_number() -> None:
    course, sids = booked(new_course("IPT"), 3)
    course = cancel_session(course, sids[1], LATE)
    assert course.session(sids[1]).status == "late_cancelled"
    assert next_number(course) == 4


def test_no_show_before_the_concluding_phase_counts_as_used() -> None:
    course, sids = booked(new_course("IPT"), 4)
    course = attend(course, sids[0], 15)
    course = no_show(course, sids[3])
    assert next_number(course) == 5


def test_missed_concluding_session_gets_a_make_up_with_its_number() -> None:
    course, sids = booked(new_course("IPT"), 12)
    course = attend(course, sids[0], 15)
    for sid in sids[1:10]:
        course = attend(course, sid)
    course = no_show(course, sids[10])  # number 11, concluding
    assert next_number(course) == 11
    course, make_up = book_session(course, uuid.uuid4(), FIRST + timedelta(weeks=20))
    assert (make_up.number, make_up.phase) == (11, "concluding")
    course = attend(course, sids[11], 6)
    assert completion(course) is None and course.status == "active"  # 11 not held yet
    course = attend(course, make_up.session_id, 4)
    assert course.status == "completed"
    assert completion(course) == Completion("remission", 12, "moderately_severe", "minimal")


def test_free_reschedule_keeps_the_session() -> None:
    course, sids = booked(new_course("IPT"), 2)
    new_time = FIRST + timedelta(days=3)
    course, moved = reschedule_session(course, sids[1], new_time, FREE, uuid.uuid4())
    assert (moved.session_id, moved.number, moved.starts_at) == (sids[1], 2, new_time)
    assert len(course.sessions) == 2


def test_late_reschedule_by_client_leaves_a_late_cancellation() -> None:
    course, sids = booked(new_course("IPT"), 2)
    left_behind = uuid.uuid4()
    new_time = FIRST + timedelta(days=9)
    course, moved = reschedule_session(course, sids[1], new_time, LATE, left_behind)
    missed = course.session(left_behind)
    assert (missed.status, missed.number, missed.starts_at) == (
        "late_cancelled",
        2,
        FIRST + timedelta(weeks=1),
    )
    assert (moved.session_id, moved.number, moved.starts_at) == (sids[1], 3, new_time)
    assert course.session(sids[1]).status == "booked" and len(course.sessions) == 3


def test_only_booked_sessions_change() -> None:
    course, sids = booked(new_course("IPT"), 2)
    course = cancel_session(course, sids[1], FREE)
    with pytest.raises(SessionStateConflict) as caught:
        cancel_session(course, sids[1], FREE)
    assert caught.value.code == "session_not_booked"
    with pytest.raises(InvalidInput):
        cancel_session(course, uuid.uuid4(), FREE)


# ----------------------------------------------------------------------------- attendance and PHQ-9


def test_phq9_required_at_the_first_held_session() -> None:
    course, sids = booked(new_course("IPT"), 2)
    with pytest.raises(Phq9Required) as caught:
        attend(course, sids[0])
    assert caught.value.code == "phq9_required"
    course = attend(course, sids[0], 14)
    assert attend(course, sids[1]).session(sids[1]).status == "attended"  # optional later


def test_phq9_required_at_first_held_even_after_a_no_show() -> None:
    course, sids = booked(new_course("IPT"), 2)
    course = no_show(course, sids[0])
    with pytest.raises(Phq9Required):
        attend(course, sids[1])


def test_phq9_required_at_the_last_session() -> None:
    course, sids = booked(new_course("IPT"), 12)
    course = attend(course, sids[0], 15)
    for sid in sids[1:11]:
        course = attend(course, sid)
    with pytest.raises(Phq9Required) as caught:
        attend(course, sids[11])
    assert "12" in caught.value.message


def test_attendance_only_after_the_start() -> None:
    course, sids = booked(new_course("IPT"), 1)
    with pytest.raises(SessionStateConflict) as caught:
        record_attendance(
            course, sids[0], "attended", now=FIRST - timedelta(minutes=1), phq9_total=9
        )
    assert caught.value.code == "session_not_started"
    at_start = record_attendance(course, sids[0], "attended", now=FIRST, phq9_total=9)
    assert sessions_held(at_start) == 1


def test_phq9_values() -> None:
    course, sids = booked(new_course("IPT"), 2)
    with pytest.raises(ValueError):
        attend(course, sids[0], 28)
    course = attend(course, sids[0], 10)
    course = record_phq9(course, sids[0], 12)
    assert course.session(sids[0]).phq9_total == 12
    with pytest.raises(SessionStateConflict):
        record_phq9(course, sids[1], 5)  # not held yet
    with pytest.raises(InvalidInput):
        record_attendance(course, sids[1], "no_show", now=FIRST + timedelta(weeks=2), phq9_total=3)


# ----------------------------------------------------------------------------- completion


@pytest.mark.parametrize(
    ("start", "final", "expected"),
    [
        (20, 10, Completion("response", 12, "severe", "moderate")),
        (12, 4, Completion("remission", 12, "moderate", "minimal")),
        (3, 4, Completion("remission", 12, "minimal", "minimal")),
        (12, 9, Completion("neither", 12, "moderate", "mild")),
        (18, 9, Completion("response", 12, "moderately_severe", "mild")),  # exactly half
        (18, 10, Completion("neither", 12, "moderately_severe", "moderate")),
    ],
)
def test_completion_outcome(start: int, final: int, expected: Completion) -> None:
    course = held_course(start, final)
    assert completion(course) == expected
    assert course.status == "completed"


def test_not_complete_before_the_concluding_phase_is_held() -> None:
    course, sids = booked(new_course("IPT"), 12)
    course = attend(course, sids[0], 15)
    for sid in sids[1:11]:
        course = attend(course, sid)
    assert completion(course) is None
    assert course.status == "active" and sessions_held(course) == 11


def test_sixteen_planned_sessions_complete_after_sixteen() -> None:
    course = held_course(22, 11, planned=16)
    assert completion(course) == Completion("response", 16, "severe", "moderate")


def test_completed_course_is_closed() -> None:
    course = held_course(15, 5)
    with pytest.raises(CourseClosed) as caught:
        book_session(course, uuid.uuid4(), FIRST + timedelta(weeks=30))
    assert caught.value.code == "course_closed"


# ----------------------------------------------------------------------------- ending early


def test_end_early_cancels_booked_sessions() -> None:
    course, sids = booked(new_course("IPT"), 4)
    course = attend(course, sids[0], 17)
    course = no_show(course, sids[1])
    ended = end_early(course, "no_shows", by="therapist")
    assert (ended.status, ended.end_reason) == ("ended_early", "no_shows")
    assert [s.status for s in ended.sessions] == ["attended", "no_show", "cancelled", "cancelled"]
    assert completion(ended) is None and sessions_held(ended) == 1
    with pytest.raises(CourseClosed):
        end_early(ended, "other", by="therapist")
    with pytest.raises(CourseClosed):
        attend(ended, sids[2], 5)


@pytest.mark.parametrize(
    ("by", "reason", "allowed"),
    [
        ("client", "client_withdrew", True),
        ("client", "no_shows", False),
        ("client", "switched_therapist", False),
        ("therapist", "referred_elsewhere", True),
        ("therapist", "switched_therapist", False),
        ("system", "switched_therapist", True),
        ("admin", "other", False),
    ],
)
def test_who_may_end_a_course_for_which_reason(by: str, reason: str, allowed: bool) -> None:
    course, _ = booked(new_course("IPT"), 1)
    if allowed:
        assert end_early(course, reason, by=by).status == "ended_early"  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidInput) as caught:
            end_early(course, reason, by=by)  # type: ignore[arg-type]
        assert caught.value.code == "end_reason_not_allowed"


# ----------------------------------------------------------------------------- the plan


def test_a_longer_plan_moves_the_concluding_phase() -> None:
    course, sids = booked(new_course("IPT"), 12)
    assert course.session(sids[9]).phase == "concluding"
    longer = replan(course, planned_sessions=14, session_minutes=60)
    assert (longer.planned_sessions, longer.session_minutes) == (14, 60)
    assert [longer.session(sid).phase for sid in sids[9:]] == ["middle", "middle", "concluding"]
    assert next_number(longer) == 13


def test_the_plan_keeps_the_places_already_taken() -> None:
    course, _ = booked(new_course("KBT", 12), 10)
    with pytest.raises(Conflict) as caught:
        replan(course, planned_sessions=9)
    assert caught.value.code == "plan_below_booked"
    assert replan(course, planned_sessions=10).planned_sessions == 10
    with pytest.raises(InvalidCourse):
        replan(course, planned_sessions=21)


def test_a_shorter_plan_can_complete_the_course() -> None:
    course, sids = booked(new_course("KBT", 10), 8)
    course = attend(course, sids[0], 14)
    for sid in sids[1:-1]:
        course = attend(course, sid)
    course = attend(course, sids[-1], 6)
    assert course.status == "active"  # 9 and 10 not held yet
    done = replan(course, planned_sessions=8)
    assert done.status == "completed" and completion(done) is not None
    with pytest.raises(CourseClosed):
        replan(done, planned_sessions=9)
