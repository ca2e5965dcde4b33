"""A therapist's availability, the catalog's read model of therapists, free slots, and
the free-slot summaries published for matching."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import asyncpg

from booking import store
from booking.domain.availability import (
    WEEKDAYS,
    AvailabilityRules,
    Blocked,
    Busy,
    DateException,
    FreeTime,
    Hours,
    Slot,
)
from booking.domain.clock import DEFAULT_TIME_ZONE
from booking.domain.errors import InvalidAvailability
from booking.service.common import (
    SUMMARY_MAX_SLOTS,
    SUMMARY_SESSION_MINUTES,
    log,
    not_found,
)
from booking.service.records import AvailabilityRecord, FreeSlots
from booking.settings import Settings
from chassis.app import Runtime
from chassis.auth import Principal
from chassis.errors import Conflict
from chassis.periodic import periodic
from contracts.events import (
    FreeSlot,
    TherapistAvailabilityPublished,
    TherapistProfilePublished,
    TherapistProfileWithdrawn,
)

# --------------------------------------------------------------------------- catalog read model


async def apply_profile(
    conn: asyncpg.Connection, profile: TherapistProfilePublished, now: datetime
) -> bool:
    applied = await store.apply_profile(
        conn,
        profile.therapist_id,
        time_zone=profile.time_zone,
        modes=profile.modes,
        city=profile.city,
        practice_address=profile.practice_address,
        version=profile.version,
    )
    if applied:  # the time zone may have moved every slot
        await store.request_summary(conn, profile.therapist_id)
    return applied


async def apply_withdrawal(
    conn: asyncpg.Connection, withdrawn: TherapistProfileWithdrawn, now: datetime
) -> bool:
    applied = await store.apply_withdrawal(conn, withdrawn.therapist_id, withdrawn.version)
    if applied:
        await store.request_summary(conn, withdrawn.therapist_id)
    return applied


# --------------------------------------------------------------------------- availability


def rules_from(row: asyncpg.Record | dict[str, Any], time_zone: str) -> AvailabilityRules:
    """Stored (or submitted) availability as domain rules; raises InvalidAvailability."""
    weekly = {
        WEEKDAYS.index(day): [Hours.parse(text) for text in hours]
        for day, hours in row["weekly"].items()
    }
    exceptions = [
        DateException(date.fromisoformat(e["date"]), tuple(Hours.parse(h) for h in e["hours"]))
        for e in row["exceptions"]
    ]
    return AvailabilityRules(
        weekly=weekly,
        exceptions=exceptions,
        time_zone=time_zone,
        buffer_minutes=row["buffer_minutes"],
        min_notice=timedelta(hours=row["min_notice_hours"]),
        horizon=timedelta(days=row["horizon_days"]),
    )


def own_calendar(who: Principal, therapist_id: uuid.UUID) -> None:
    if who.role == "therapist" and who.subject != therapist_id:
        raise not_found("therapist")


async def set_availability(
    pool: asyncpg.Pool,
    who: Principal,
    therapist_id: uuid.UUID,
    document: dict[str, Any],
    now: datetime,
) -> AvailabilityRecord:
    """A therapist sets their own hours (an admin anybody's); the summary follows."""
    own_calendar(who, therapist_id)
    async with pool.acquire() as conn, conn.transaction():
        await store.ensure_therapist(conn, therapist_id)
        therapist = await store.get_therapist(conn, therapist_id)
        assert therapist is not None
        rules_from(document, therapist["time_zone"])  # validate before storing
        row = await store.put_availability(conn, therapist_id, **document)
        await store.request_summary(conn, therapist_id)
    return AvailabilityRecord.of(therapist_id, therapist["time_zone"], row)


DEFAULT_AVAILABILITY: dict[str, Any] = {
    "weekly": {},
    "exceptions": [],
    "buffer_minutes": 15,
    "min_notice_hours": 12,
    "horizon_days": 56,
}


async def get_availability(
    pool: asyncpg.Pool, who: Principal, therapist_id: uuid.UUID
) -> AvailabilityRecord:
    own_calendar(who, therapist_id)
    async with pool.acquire() as conn:
        therapist = await store.get_therapist(conn, therapist_id)
    if therapist is None:
        return AvailabilityRecord.of(therapist_id, DEFAULT_TIME_ZONE, DEFAULT_AVAILABILITY)
    found = therapist["availability"] or DEFAULT_AVAILABILITY
    return AvailabilityRecord.of(therapist_id, therapist["time_zone"], found)


def open_rules(therapist: Any) -> AvailabilityRules | None:
    """The therapist's rules if they take bookings (published, with hours set), else None."""
    if therapist is None or not therapist["published"] or therapist["availability"] is None:
        return None
    return _stored_rules(therapist)


def rules_of(therapist: Any) -> AvailabilityRules:
    """The rules a booking must follow (the therapist's columns of `store.booking_view`); 409
    when the therapist takes no bookings."""
    if not therapist["published"]:
        raise Conflict(
            "This therapist is not taking bookings at the moment.", code="therapist_unavailable"
        )
    if therapist["availability"] is None:
        raise Conflict(
            "This therapist has not opened any times for booking yet.", code="no_availability"
        )
    return _stored_rules(therapist)


# Parsed rules by what they say: a booking reads the stored hours every time and many
# therapists keep the same hours, so parsing each text again is wasted work. Bounded.
_RULES: dict[str, AvailabilityRules] = {}
_RULES_KEPT = 10_000
_RULE_FIELDS = ("weekly", "exceptions", "buffer_minutes", "min_notice_hours", "horizon_days")


def _stored_rules(therapist: Any) -> AvailabilityRules:
    stored = therapist["availability"]
    key = json.dumps([therapist["time_zone"], *(stored[name] for name in _RULE_FIELDS)])
    found = _RULES.get(key)
    if found is None:
        try:
            found = rules_from(stored, therapist["time_zone"])
        except InvalidAvailability as exc:
            # Valid when stored (`set_availability` checks), refused by a stricter rule since:
            # not a 422 to a client about hours they never sent, but no bookings until the
            # therapist sets their hours again (the summary goes out without slots).
            log.error(
                "stored availability unreadable",
                therapist=stored.get("therapist_id"),
                error=str(exc),
            )
            raise Conflict(
                "This therapist's times cannot be booked just now; please try again later.",
                code="no_availability",
            ) from exc
        if len(_RULES) >= _RULES_KEPT:
            _RULES.clear()
        _RULES[key] = found
    return found


async def calendars(
    conn: asyncpg.Connection,
    rules: AvailabilityRules,
    now: datetime,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID | None = None,
    except_session: uuid.UUID | None = None,
) -> tuple[list[Busy], list[Busy]]:
    """The therapist's and the client's busy times that can matter to a booking made now."""
    return await store.busy_of(
        conn,
        since=now - timedelta(days=1),
        until=now + rules.horizon + timedelta(days=1),
        therapist_id=therapist_id,
        client_id=client_id,
        except_session=except_session,
    )


async def free_slots_for(
    pool: asyncpg.Pool,
    who: Principal,
    therapist_id: uuid.UUID,
    now: datetime,
    minutes: int | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> FreeSlots:
    """Free slots of a therapist, for the therapist and for clients with a course with them:
    the precomputed day tables (domain `FreeTime`) minus the busy times, one round trip (the
    therapist's hours and both calendars read together; the therapist's busy times only
    when their calendar moved since this replica last listed it)."""
    client = who.subject if who.role == "client" else None
    if client is None:
        own_calendar(who, therapist_id)
    kept = _CALENDARS.get(therapist_id)
    async with pool.acquire() as conn:
        view = await store.slot_view(
            conn,
            therapist_id,
            client,
            now,
            None if kept is None else (kept.revision, kept.low, kept.high),
        )
    if client is not None:
        if not view["has_course"]:
            raise not_found("therapist")
        minutes = minutes or view["course_minutes"]
    minutes = minutes or SUMMARY_SESSION_MINUTES
    rules = open_rules(view if view["time_zone"] is not None else None)
    slots: list[Slot] = []
    if rules is not None:
        unchanged = view["calendar_unchanged"]
        calendar = calendar_read(
            therapist_id,
            kept,
            view["calendar_revision"],
            (view["low"], view["high"]),
            None if unchanged else view["therapist_starts"],
            None if unchanged else view["therapist_ends"],
        )
        blocked = merged(therapist_id, calendar, timedelta(minutes=rules.buffer_minutes))
        if view["client_starts"]:  # a client cannot be in two sessions at once either
            blocked = blocked.adding(zip(view["client_starts"], view["client_ends"], strict=True))
        slots = FreeTime(rules, minutes, blocked, now).first(limit, since)
    return FreeSlots(therapist_id, view["time_zone"] or DEFAULT_TIME_ZONE, minutes, slots)


@dataclass(frozen=True, slots=True)
class Calendar:
    """A therapist's busy times as read in the window [low, high), with their calendar's
    revision then (kept by a replica: a statement sent with the revision leaves them out
    while it still holds)."""

    revision: int | None  # None: not kept (the calendar had no revision yet)
    low: datetime
    high: datetime
    busy: list[Busy]


# Per therapist, the busy times last read in a window of their calendar, with its revision
# then: by a listing of free slots or a refusal, on this replica. A statement sent with that
# revision leaves the therapist's busy times out while it still holds (a listing, or a full
# calendar refused over and over, reads them once per change). Bounded.
_CALENDARS: dict[uuid.UUID, Calendar] = {}
_CALENDARS_KEPT = 10_000


def calendar_kept(therapist_id: uuid.UUID, low: datetime, high: datetime) -> Calendar | None:
    """The therapist's busy times kept for a window holding [low, high), if any."""
    kept = _CALENDARS.get(therapist_id)
    if kept is None or kept.revision is None or low < kept.low or kept.high < high:
        return None
    return kept


def calendar_read(
    therapist_id: uuid.UUID,
    known: Calendar | None,
    revision: int | None,
    window: tuple[datetime, datetime],
    starts: Sequence[datetime] | None,
    ends: Sequence[datetime] | None,
) -> Calendar:
    """The therapist's busy times (`starts`, `ends`) just read in `window` at `revision`, kept:
    `known` when they were not read (None: the statement found `known`'s revision
    unchanged), the one kept already when it is the same (a revision is one state of the
    calendar, and another listing or refusal may have read it meanwhile), so its merge
    serves both."""
    if starts is None or ends is None:
        assert known is not None
        return known
    current = _CALENDARS.get(therapist_id)
    if (
        current is not None
        and revision is not None
        and current.revision == revision
        and (current.low, current.high) == window
    ):
        return current
    calendar = Calendar(revision, *window, list(zip(starts, ends, strict=True)))
    if revision is None:  # (no revision yet: nothing to tell a change by)
        return calendar
    if len(_CALENDARS) >= _CALENDARS_KEPT:
        _CALENDARS.clear()
    _CALENDARS[therapist_id] = calendar
    return calendar


# Per therapist, their kept calendar's busy times merged: listings and the refusals of their
# clients put the client's own busy times on top (`Blocked.adding`), and the therapist's free
# slots of a day are listed once for all of them instead of once each.
_MERGED: dict[uuid.UUID, tuple[Calendar, Blocked]] = {}


def merged(therapist_id: uuid.UUID, calendar: Calendar, buffer: timedelta) -> Blocked:
    """`calendar`'s busy times merged with `buffer` (once per calendar kept)."""
    found = _MERGED.get(therapist_id)
    if found is None or found[0] is not calendar or found[1].buffer != buffer:
        if len(_MERGED) >= _CALENDARS_KEPT:
            _MERGED.clear()
        found = _MERGED[therapist_id] = (calendar, Blocked(calendar.busy, buffer))
    return found[1]


async def publish_summaries(
    conn: asyncpg.Connection, therapist_ids: Sequence[uuid.UUID], now: datetime
) -> None:
    """Summaries of many therapists into the outbox, in the caller's transaction: reads and
    writes are batched (three round trips for the lot)."""
    therapists, rules = await store.summary_therapists(conn, therapist_ids), []
    for therapist in therapists:
        try:
            rules.append(open_rules(therapist))
        except Exception:  # stored rules were valid when stored: one bad row never stops the
            # batch (its requests would come back forever); it is published without slots
            log.exception("unreadable availability", therapist=str(therapist["therapist_id"]))
            rules.append(None)
    horizon = max((r.horizon for r in rules if r is not None), default=timedelta(0))
    busy = await store.busy_of_many(
        conn, therapist_ids, now - timedelta(days=1), now + horizon + timedelta(days=1)
    )
    summaries = []
    for therapist, found in zip(therapists, rules, strict=True):
        slots: list[Slot] = []
        if found is not None:
            free = FreeTime(found, SUMMARY_SESSION_MINUTES, busy[therapist["therapist_id"]], now)
            slots = free.first(SUMMARY_MAX_SLOTS)
        summaries.append(
            TherapistAvailabilityPublished(
                therapist_id=therapist["therapist_id"],
                computed_at=now,
                active_courses=therapist["active_courses"],
                free_slots=[_summary_slot(slot.starts_at) for slot in slots],
            )
        )
    await store.add_events(conn, summaries)


# The summary's slots as contract objects, made once per start and shared by every summary
# that offers it (many therapists keep the same hours): validating 400 slot models per
# summary was most of a refresh pass. A list of ready instances is accepted as it is.
_SUMMARY_SLOTS: dict[datetime, FreeSlot] = {}
_SUMMARY_SLOTS_KEPT = 200_000


def _summary_slot(starts_at: datetime) -> FreeSlot:
    found = _SUMMARY_SLOTS.get(starts_at)
    if found is None:
        if len(_SUMMARY_SLOTS) >= _SUMMARY_SLOTS_KEPT:
            _SUMMARY_SLOTS.clear()
        found = _SUMMARY_SLOTS[starts_at] = FreeSlot(
            starts_at=starts_at, minutes=SUMMARY_SESSION_MINUTES
        )
    return found


async def publish_due_summaries(
    pool: asyncpg.Pool,
    now: datetime | Callable[[], datetime],
    window_s: float,
    batch: int = 200,
) -> int:
    """Publish the summary of every therapist whose oldest request is `window_s` old: one
    summary for all their requests, computed from the committed state after the requests
    were taken. Replicas share the work (each therapist goes to one of them, advisory locks
    skip the others); a replica that dies mid-batch leaves the requests for the next pass.
    `now` may be a clock, read once the batch's therapists are locked: a therapist's
    summaries are then stamped in the order of the states they show (matching keeps the
    newest `computed_at`). Returns how many therapists were published."""
    published = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            therapists = await store.take_due_summaries(conn, window_s, batch)
            if therapists:
                await publish_summaries(conn, therapists, now() if callable(now) else now)
        published += len(therapists)
        if len(therapists) < batch:
            return published


async def refresh_summaries(pool: asyncpg.Pool, now: datetime, every_s: float) -> int:
    """As time passes a summary's first slots start and new days enter the horizon with no
    change to trigger it: once every `every_s` (by whichever replica moves the schedule on)
    every bookable therapist's summary is requested, and the publishers of all replicas share
    the work. Cells of time long past are forgotten in the same turn."""
    async with pool.acquire() as conn, conn.transaction():
        requested = await store.queue_refresh(conn, every_s)
        if requested:
            await store.forget_past_cells(conn, now - timedelta(days=2))
    return requested


async def publish_summaries_due(runtime: Runtime) -> None:
    """Queue the periodic refresh if it is due and publish the summaries that are due (see
    `publish_due_summaries` for the delay bound). A round that fails keeps the requests:
    the next one publishes them."""
    settings = cast(Settings, runtime.settings)
    pool: asyncpg.Pool = runtime.pool
    offset = await _clock_offset(pool, settings)
    now = datetime.now(UTC) + offset
    await refresh_summaries(pool, now, settings.summary_refresh_s)
    count = await publish_due_summaries(
        pool, functools.partial(_ahead, offset), settings.summary_window_s
    )
    if count:
        log.debug("free-slot summaries published", therapists=count)


# Worker task: a round every `summary_poll_s`.
summary_publisher = periodic(
    "summary-publisher",
    lambda settings: cast(Settings, settings).summary_poll_s,
    publish_summaries_due,
)


async def _clock_offset(pool: asyncpg.Pool, settings: Settings) -> timedelta:
    """How far booking's clock is ahead in the worker (the demo clock, where it is on, as the
    api has it)."""
    if not settings.demo_clock:
        return timedelta(0)
    async with pool.acquire() as conn:
        return timedelta(seconds=await store.clock_offset_s(conn))


def _ahead(offset: timedelta) -> datetime:
    return datetime.now(UTC) + offset
