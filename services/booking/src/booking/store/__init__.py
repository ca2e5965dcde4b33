"""All SQL of booking. Functions take a connection; callers own the transaction. Nothing takes
a therapist-wide lock: a booking claims its time as cells in the statement that books
(`book`), and changes to a course lock that course's row.

Split by use case, as `booking.service` is: `availability` (the therapist's row, hours, free
slots, the summaries for matching), `courses` (courses and the matches that open them),
`sessions` (session rows), `claims` (booking a time by claiming its cells, and the view a
booking decides on), `clock` (the demo clock), `rights` (access, erasure, retention);
`common` holds what they share (live statuses, the outbox, stored answers). Callers use
`from booking import store` and `store.<function>`, so the names are re-exported here.
"""

from __future__ import annotations

from booking.store.availability import (
    apply_profile,
    apply_withdrawal,
    busy_of_many,
    ensure_therapist,
    get_therapist,
    put_availability,
    queue_refresh,
    request_summary,
    slot_view,
    summary_therapists,
    take_due_summaries,
)
from booking.store.claims import (
    CELL,
    NEARBY,
    book,
    book_one,
    booking_view,
    calendars_in,
    cells_of,
    check_time,
    check_times,
    claim,
    forget_past_cells,
    nearby_of,
    release,
    view_sessions,
)
from booking.store.clock import advance_clock, clock_offset_s
from booking.store.common import LIVE, add_events, find_answer, save_answer
from booking.store.courses import (
    close_course,
    count_active_courses,
    courses_of,
    get_course,
    has_course_between,
    insert_course,
    intakes_other_courses,
    latest_course_minutes,
    lock_course,
    record_approval,
    record_match,
    update_plan,
)
from booking.store.rights import erase_requests, forget_requests, personal_data, purge_expired
from booking.store.sessions import (
    busy_of,
    cancel_session,
    get_session,
    insert_session,
    move_session,
    record_attendance,
    sessions_of_course,
    set_phases,
)

__all__ = [
    "CELL",
    "LIVE",
    "NEARBY",
    "add_events",
    "advance_clock",
    "apply_profile",
    "apply_withdrawal",
    "book",
    "book_one",
    "booking_view",
    "busy_of",
    "busy_of_many",
    "calendars_in",
    "cancel_session",
    "cells_of",
    "check_time",
    "check_times",
    "claim",
    "clock_offset_s",
    "close_course",
    "count_active_courses",
    "courses_of",
    "ensure_therapist",
    "erase_requests",
    "find_answer",
    "forget_past_cells",
    "forget_requests",
    "get_course",
    "get_session",
    "get_therapist",
    "has_course_between",
    "insert_course",
    "insert_session",
    "intakes_other_courses",
    "latest_course_minutes",
    "lock_course",
    "move_session",
    "nearby_of",
    "personal_data",
    "purge_expired",
    "put_availability",
    "queue_refresh",
    "record_approval",
    "record_attendance",
    "record_match",
    "release",
    "request_summary",
    "save_answer",
    "sessions_of_course",
    "set_phases",
    "slot_view",
    "summary_therapists",
    "take_due_summaries",
    "update_plan",
    "view_sessions",
]
