"""A replica keeps what a booking decides on (the course, the therapist's rules, the busy
times seen) between bookings: every change, on any replica, still decides the next booking."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from booking import service, store
from booking.service import availability, contexts
from booking.store import claims
from chassis.auth import Principal
from chassis.errors import Conflict


def _later(now: datetime, days: int, hour: int) -> datetime:
    return (now + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


async def test_a_cancelled_session_gives_its_place_back_to_a_remembered_course(pool, kit) -> None:
    now = datetime.now(UTC)
    therapist, client = await kit.open_therapist(pool, now), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    me = Principal(client, "client")
    first = await service.book_session(pool, me, course, _later(now, 2, 9), "k1", now)
    assert contexts.cached(course) is not None  # remembered after booking
    await service.cancel(pool, me, first.session_id, now)  # a change made elsewhere
    again = await service.book_session(pool, me, course, _later(now, 3, 9), "k2", now)
    assert (first.number, again.number) == (1, 1)


async def test_a_remembered_course_sees_another_replicas_booking(pool, kit) -> None:
    now = datetime.now(UTC)
    therapist, client = await kit.open_therapist(pool, now), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    me = Principal(client, "client")
    await service.book_session(pool, me, course, _later(now, 2, 9), "k1", now)
    remembered = contexts.cached(course)
    assert remembered is not None
    await service.book_session(pool, me, course, _later(now, 3, 9), "k2", now)
    contexts._CONTEXTS[course] = remembered  # as a replica that did not see the second one
    third = await service.book_session(pool, me, course, _later(now, 4, 9), "k3", now)
    assert third.number == 3


async def test_new_hours_decide_the_next_booking_of_a_remembered_course(pool, kit) -> None:
    now = datetime.now(UTC)
    therapist, client = await kit.open_therapist(pool, now), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    me = Principal(client, "client")
    await service.book_session(pool, me, course, _later(now, 2, 9), "k1", now)
    await service.set_availability(
        pool, Principal(therapist, "therapist"), therapist, kit.hours("13:00-17:00"), now
    )
    with pytest.raises(Conflict) as refused:
        await service.book_session(pool, me, course, _later(now, 3, 9), "k2", now)
    assert refused.value.code == "outside_hours"
    later = await service.book_session(pool, me, course, _later(now, 3, 13), "k3", now)
    assert later.number == 2


async def test_a_time_believed_taken_is_booked_once_it_is_free(pool, kit) -> None:
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other_course = await kit.open_course(pool, second, therapist, now)
    wanted = _later(now, 2, 9)
    taken = await service.book_session(pool, Principal(first, "client"), course, wanted, "a", now)
    with pytest.raises(Conflict) as refused:  # the refusal shows the time taken
        await service.book_session(
            pool, Principal(second, "client"), other_course, wanted, "b", now
        )
    assert refused.value.code == "taken"
    minutes = taken.ends_at - taken.starts_at
    assert contexts.seems_taken(therapist, wanted, wanted + minutes, timedelta(minutes=15))
    await service.cancel(pool, Principal(first, "client"), taken.session_id, now)
    booked = await service.book_session(
        pool, Principal(second, "client"), other_course, wanted, "c", now
    )
    assert booked.starts_at == wanted
    retried = await service.book_session(
        pool, Principal(second, "client"), other_course, wanted, "c", now
    )
    assert retried == booked  # the same key answers the same, however the time was known


async def test_a_kept_calendar_is_read_again_once_a_booking_or_a_cancellation_changes_it(
    pool, kit
) -> None:
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    courses = [await kit.open_course(pool, c, therapist, now) for c in (first, second, third)]
    wanted = _later(now, 2, 9)
    await service.book_session(pool, Principal(first, "client"), courses[0], wanted, "a", now)

    async def offered(key: str) -> list[dict[str, str]]:
        with pytest.raises(Conflict) as refused:
            await service.book_session(
                pool, Principal(second, "client"), courses[1], wanted, key, now
            )
        assert refused.value.code == "taken"
        alternatives: list[dict[str, str]] = refused.value.extra["alternatives"]
        return alternatives

    before = await offered("b1")  # from the busy times read with the course
    assert await offered("b2") == before
    assert availability._CALENDARS[therapist].revision is not None  # kept with its revision
    assert await offered("b3") == before  # answered from the kept busy times
    # Another replica books the first alternative: this one's kept busy times lack it.
    other = await service.book_session(
        pool,
        Principal(third, "client"),
        courses[2],
        datetime.fromisoformat(before[0]["starts_at"]),
        "c",
        now,
    )
    changed = await offered("b4")
    assert before[0] not in changed
    await service.cancel(pool, Principal(third, "client"), other.session_id, now)
    assert await offered("b5") == before


async def test_the_question_whether_a_time_is_free_is_answered_as_the_booking_would(
    pool, kit
) -> None:
    """`store.check_time` (one plain statement) answers each verdict with the same row as
    the SQL function `book_one` asked without a session (the booking's own check)."""
    now = datetime.now(UTC)
    therapist, elsewhere = await kit.open_therapist(pool, now), await kit.open_therapist(pool, now)
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other_course = await kit.open_course(pool, second, therapist, now)
    firsts_elsewhere = await kit.open_course(pool, first, elsewhere, now)
    wanted = _later(now, 2, 9)
    await service.book_session(pool, Principal(first, "client"), course, wanted, "a", now)
    near = (wanted - timedelta(days=1), wanted + timedelta(days=1))

    async def answers(course_id: uuid.UUID, client: uuid.UUID, starts_at: datetime, **how: Any):
        async with pool.acquire() as conn:
            view = await store.booking_view(conn, course_id, client, "?", starts_at)
            decided_on = how.get("decided_on") or (
                course_id,
                view["revision"],
                view["therapist_id"],
                view["therapist_revision"],
                view["availability_revision"],
            )
            ends_at = starts_at + timedelta(minutes=45)
            key = how.get("key", (client, "new"))
            checked = await store.check_time(
                conn,
                decided_on=decided_on,
                client_id=client,
                span=(starts_at, ends_at, 15),
                key=key,
                near=near,
                calendar=how.get("calendar"),
                client_calendar=how.get("client_calendar"),
            )
            asked = await conn.fetchrow(
                claims._BOOK_ONE,
                *decided_on,
                store.cells_of(starts_at, ends_at, 15),
                client,
                *key,
                None,
                None,
                starts_at,
                ends_at,
                *(None for _ in claims._ONE_COLUMNS),
                *near,
                how.get("calendar"),
                *(None for _ in range(6)),
            )
        asked_as = claims.busy_as_moments(asked)
        answered = dict(checked)
        revision = answered.pop("client_revision")  # (book_one does not answer it)
        if revision is not None and revision == how.get("client_calendar"):  # kept: left out
            for name in ("client_starts", "client_ends"):
                assert answered.pop(name) is None
                del asked_as[name]
        assert answered == asked_as
        return checked

    assert (await answers(other_course, second, wanted + timedelta(hours=3)))["verdict"] == "free"
    taken = await answers(other_course, second, wanted)
    assert taken["verdict"] == "taken"
    assert taken["nearby_starts"] == [wanted] and taken["calendar_revision"] is not None
    kept = await answers(other_course, second, wanted, calendar=taken["calendar_revision"])
    assert kept["verdict"] == "taken" and kept["nearby_starts"] is None
    busy = await answers(firsts_elsewhere, first, wanted)  # the client's own session then
    assert busy["verdict"] == "client_busy" and busy["client_starts"] == [wanted]
    assert busy["client_revision"] is not None
    kept_too = await answers(
        firsts_elsewhere, first, wanted, client_calendar=busy["client_revision"]
    )
    assert kept_too["verdict"] == "client_busy"
    moved_on = await answers(  # a revision kept from before: read again
        firsts_elsewhere, first, wanted, client_calendar=busy["client_revision"] - 1
    )
    assert moved_on["client_starts"] == [wanted]
    earlier = await answers(course, first, wanted, key=(first, "a"))
    assert earlier["verdict"] == "earlier" and earlier["earlier_hash"] is not None
    async with pool.acquire() as conn:
        view = await store.booking_view(conn, other_course, second, "?", wanted)
    moved = (other_course, view["revision"] - 1, therapist, view["therapist_revision"], 0)
    stale = await answers(other_course, second, wanted, decided_on=moved)
    assert stale["verdict"] == "stale"


async def test_a_clients_kept_busy_times_are_read_again_once_their_sessions_change(
    pool, kit
) -> None:
    """The client's calendar revision (`store.check_time`) moves with each change of their
    sessions, in any of their courses."""
    now = datetime.now(UTC)
    therapist, elsewhere = await kit.open_therapist(pool, now), await kit.open_therapist(pool, now)
    client, other = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    second_course = await kit.open_course(pool, client, elsewhere, now)
    others = await kit.open_course(pool, other, therapist, now)
    me = Principal(client, "client")
    wanted = _later(now, 2, 9)
    await service.book_session(pool, Principal(other, "client"), others, wanted, "o", now)
    window = (wanted - timedelta(days=1), wanted + timedelta(days=1))

    async def asked(kept: int | None) -> Any:
        async with pool.acquire() as conn:
            view = await store.booking_view(conn, course, client, "?", wanted)
            decided_on = (
                course,
                view["revision"],
                therapist,
                view["therapist_revision"],
                view["availability_revision"],
            )
            return await store.check_time(
                conn,
                decided_on=decided_on,
                client_id=client,
                span=(wanted, wanted + timedelta(minutes=45), 15),
                key=(client, "?"),
                near=window,
                client_calendar=kept,
            )

    first = await asked(None)
    assert first["verdict"] == "taken" and first["client_starts"] == []
    assert (await asked(first["client_revision"]))["client_starts"] is None  # kept: left out
    elsewhere_at = wanted + timedelta(hours=3)
    booked = await service.book_session(pool, me, second_course, elsewhere_at, "k1", now)
    after_booking = await asked(first["client_revision"])
    assert after_booking["client_starts"] == [elsewhere_at]
    await service.cancel(pool, me, booked.session_id, now)
    after_cancelling = await asked(after_booking["client_revision"])
    assert after_cancelling["client_starts"] == []


@pytest.mark.parametrize("remembered", [True, False])
async def test_a_full_course_is_told_so_even_for_a_time_another_client_holds(
    pool, kit, remembered: bool
) -> None:
    """A client whose course has every planned session booked learns that (`course_full`),
    not that the time is taken with other times to try, which they could not book either."""
    now = datetime.now(UTC)
    therapist, client, other = await kit.open_therapist(pool, now), uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    others = await kit.open_course(pool, other, therapist, now)
    me = Principal(client, "client")
    for day in range(2, 14):  # IPT: twelve planned sessions
        await service.book_session(pool, me, course, _later(now, day, 9), f"k{day}", now)
    held = _later(now, 20, 11)
    await service.book_session(pool, Principal(other, "client"), others, held, "o", now)
    if not remembered:
        contexts.forget(course)
    for starts_at in (held, _later(now, 21, 11)):  # taken by another client, and free
        with pytest.raises(Conflict) as refused:
            await service.book_session(pool, me, course, starts_at, f"late {starts_at}", now)
        assert refused.value.code == "course_full", refused.value.code


async def test_stored_hours_that_no_longer_read_close_the_calendar_with_a_409(pool, kit) -> None:
    """Hours valid when stored, refused by a stricter rule since (written here with SQL as a
    row of that time would be): the client learns the therapist takes no bookings (409), not
    a 422 about hours they never sent; the therapist sets them again and books open."""
    now = datetime.now(UTC)
    therapist, client = await kit.open_therapist(pool, now), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    me = Principal(client, "client")
    await pool.execute(
        "UPDATE availability SET weekly = $2 WHERE therapist_id = $1",
        therapist,
        {"monday": ["25:00-26:00"]},
    )
    contexts.forget(course)
    with pytest.raises(Conflict) as refused:
        await service.book_session(pool, me, course, _later(now, 2, 9), "k1", now)
    assert refused.value.code == "no_availability", refused.value.code
    with pytest.raises(Conflict) as listed:
        await service.free_slots_for(pool, me, therapist, now)
    assert listed.value.code == "no_availability", listed.value.code
    await service.set_availability(
        pool, Principal(therapist, "therapist"), therapist, kit.hours(), now
    )
    booked = await service.book_session(pool, me, course, _later(now, 2, 9), "k2", now)
    assert booked.number == 1
