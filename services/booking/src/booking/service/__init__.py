"""Booking's use cases: load, apply a domain rule, store, emit, in one transaction each.

Split by use case: `availability` (hours, free slots, the summaries for matching),
`courses` (open, replan, end, complete), `sessions` (book one or a series), `changes`
(cancel, reschedule, attendance), `clock` (the demo clock); `common` holds what they
share, `records` what they return (typed values, which `api.py` maps to its answers).

No therapist-wide lock: the database decides who gets a time. A booking of a course this
replica knows (`contexts`: the course, its sessions and the therapist's rules, with their
revisions) checks the rules in memory and books in one statement that checks the revisions,
claims the session's time as cells (first claim wins) and writes everything, or refuses with
the busy times near the time (`store.book_one`); otherwise it reads first (one round trip).
The exclusion constraints stay as the safety net, and a collision either catches answers 409
like any taken slot. Changes of a
course (cancel, move, end, replan, attendance) lock that course's row. Events go through the
outbox with the change. The free-slot summary for matching leaves the change's transaction:
the change only files a request, and the worker's publisher (`publish_due_summaries`) sends
one summary per therapist per `summary_window_s` after commit.

The HTTP routes and event handlers only translate to and from these functions. `now` is a
parameter so rules about time (notice, the 24-hour policy, attendance) are testable.
"""

from __future__ import annotations

from booking.service.availability import (
    apply_profile,
    apply_withdrawal,
    free_slots_for,
    get_availability,
    publish_due_summaries,
    publish_summaries,
    refresh_summaries,
    set_availability,
    summary_publisher,
)
from booking.service.changes import cancel, record_attendance, reschedule
from booking.service.clock import advance_clock, clock_offset_s
from booking.service.courses import (
    change_plan,
    end_course,
    list_courses,
    on_approval,
    on_match,
    open_course,
    read_course,
)
from booking.service.rights import handle_rights_request, purge_expired
from booking.service.sessions import book_series, book_session

__all__ = [
    "advance_clock",
    "apply_profile",
    "apply_withdrawal",
    "book_series",
    "book_session",
    "cancel",
    "change_plan",
    "clock_offset_s",
    "end_course",
    "free_slots_for",
    "get_availability",
    "handle_rights_request",
    "list_courses",
    "on_approval",
    "on_match",
    "open_course",
    "publish_due_summaries",
    "publish_summaries",
    "purge_expired",
    "read_course",
    "record_attendance",
    "refresh_summaries",
    "reschedule",
    "set_availability",
    "summary_publisher",
]
