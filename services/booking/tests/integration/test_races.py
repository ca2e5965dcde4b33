"""Many clients, one slot: one booking, clear 409s, and a database that refuses overlap."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from booking import service, store
from booking.app import DEFINITION
from booking.service import availability, contexts, sessions
from booking.service.common import reread_course
from chassis import db
from chassis.app import build
from chassis.auth import Principal
from chassis.errors import Conflict


async def live_sessions(pool: asyncpg.Pool, therapist_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM sessions WHERE therapist_id = $1 AND status = 'booked' ORDER BY starts_at",
        therapist_id,
    )


async def open_connections(pool: asyncpg.Pool, count: int) -> None:
    """`count` of the pool's connections opened now: none of the bookings that follow
    arrives late, after a connect."""
    held = [await pool.acquire() for _ in range(count)]
    for conn in held:
        await pool.release(conn)


def count_calls(
    monkeypatch: pytest.MonkeyPatch,
    names: tuple[str, ...],
    before: Callable[[str], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """Spies on the store's functions `names` (the database still answers): how many times
    each was called; `before(name)`, if given, is awaited before each call goes on."""
    sent = dict.fromkeys(names, 0)
    for name in names:

        def counting(real=getattr(store, name), name=name):
            async def call(*args, **kwargs):
                sent[name] += 1
                if before is not None:
                    await before(name)
                return await real(*args, **kwargs)

            return call

        monkeypatch.setattr(store, name, counting())
    return sent


async def test_fifty_clients_racing_for_one_slot_get_one_booking(
    settings, pool, serve, auth, kit
) -> None:
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    clients = [uuid.uuid4() for _ in range(50)]
    courses = [await kit.open_course(pool, client, therapist, now) for client in clients]
    api = build(DEFINITION, settings.model_copy(update={"db_pool_max": 25}), "api")
    async with serve(api) as http:
        slots = await http.get(f"/therapists/{therapist}/slots", headers=auth("client", clients[0]))
        assert slots.status_code == 200
        wanted = slots.json()["slots"][0]["starts_at"]
        answers = await asyncio.gather(
            *(
                http.post(
                    f"/courses/{course}/sessions",
                    json={"starts_at": wanted, "idempotency_key": f"race-{client}"},
                    headers=auth("client", client),
                )
                for client, course in zip(clients, courses, strict=True)
            )
        )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 1 and statuses.count(409) == 49, statuses
    refused = [a.json() for a in answers if a.status_code == 409]
    assert {r["code"] for r in refused} == {"taken"}
    assert all(r["detail"] and len(r["alternatives"]) == 3 for r in refused)
    assert all(wanted not in [s["starts_at"] for s in r["alternatives"]] for r in refused)
    booked = await live_sessions(pool, therapist)
    assert [s["starts_at"] for s in booked] == [datetime.fromisoformat(wanted)]
    winner = next(a.json() for a in answers if a.status_code == 201)
    assert winner["number"] == 1 and winner["phase"] == "initial"
    assert winner["meeting_url"].startswith("https://meet.samtal.example/")


async def test_a_retried_booking_books_once(settings, pool, serve, auth, kit) -> None:
    now = datetime.now(UTC)
    therapist, client = await kit.open_therapist(pool, now), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    day_after = (now + timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
    body = {"starts_at": day_after.isoformat(), "idempotency_key": "retry-me-1"}
    async with serve(build(DEFINITION, settings, "api")) as http:
        url, headers = f"/courses/{course}/sessions", auth("client", client)
        first, again = [await http.post(url, json=body, headers=headers) for _ in range(2)]
        other = await http.post(
            url,
            json={**body, "starts_at": (day_after + timedelta(hours=2)).isoformat()},
            headers=headers,
        )
        naive = await http.post(
            url,
            json={"starts_at": "2030-01-01T10:00:00", "idempotency_key": "naive-1"},
            headers=headers,
        )
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert len(await live_sessions(pool, therapist)) == 1
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert naive.status_code == 422 and naive.json()["detail"].startswith("starts_at")


async def test_the_database_refuses_overlap_even_without_the_lock(pool, kit) -> None:
    now = datetime.now(UTC)
    therapist, elsewhere = await kit.open_therapist(pool, now), await kit.open_therapist(pool, now)
    client, other_client = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    other_course = await kit.open_course(pool, other_client, therapist, now)
    course_elsewhere = await kit.open_course(pool, client, elsewhere, now)
    start = datetime(2031, 5, 5, 9, tzinfo=UTC)

    async def insert(course_id, client_id, therapist_id, starts_at, status="booked"):
        async with pool.acquire() as conn:
            return await store.insert_session(
                conn,
                session_id=uuid.uuid4(),
                course_id=course_id,
                client_id=client_id,
                therapist_id=therapist_id,
                number=1,
                phase="initial",
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=45),
                buffer_minutes=15,
                time_zone="Europe/Stockholm",
                mode="video",
                meeting_url="https://meet.samtal.example/x",
                practice_address=None,
                booked_by="client",
                series_id=None,
                policy_version="2026-01",
                status=status,
            )

    await insert(course, client, therapist, start)
    # Inside the therapist's buffer after the first session: refused by the constraint.
    with pytest.raises(asyncpg.ExclusionViolationError):
        await insert(other_course, other_client, therapist, start + timedelta(minutes=50))
    # The same client with another therapist at the same time: refused too.
    with pytest.raises(asyncpg.ExclusionViolationError):
        await insert(course_elsewhere, client, elsewhere, start + timedelta(minutes=30))
    # A cancelled session occupies nothing; exactly the buffer later is fine.
    await insert(other_course, other_client, therapist, start + timedelta(minutes=50), "cancelled")
    await insert(other_course, other_client, therapist, start + timedelta(minutes=60))
    assert len(await live_sessions(pool, therapist)) == 2


async def _book_directly(
    conn: asyncpg.Connection,
    course_id: uuid.UUID,
    client: uuid.UUID,
    therapist: uuid.UUID,
    start: datetime,
    key: str,
    session_id: uuid.UUID | None = None,
) -> bool:
    """One session booked through `store.book` (as a series is), on the caller's connection."""
    view = await store.booking_view(conn, course_id, client, key, start)
    session = {
        "session_id": session_id or uuid.uuid4(),
        "course_id": course_id,
        "client_id": client,
        "therapist_id": therapist,
        "number": 1,
        "phase": "initial",
        "starts_at": start,
        "ends_at": start + timedelta(minutes=45),
        "buffer_minutes": 15,
        "time_zone": "Europe/Stockholm",
        "mode": "video",
        "meeting_url": "https://meet.samtal.example/x",
        "practice_address": None,
        "booked_by": "client",
        "series_id": None,
        "policy_version": "2026-01",
    }
    return await store.book(
        conn, course=view, sessions=[session], answer=(client, key, "h", {}), events=[]
    )


async def test_a_time_a_committed_booking_holds_is_refused_without_writing(pool, kit) -> None:
    """What the read before a booking did not see yet: the statement that books finds the
    cells claimed and refuses at once, writing nothing (no session, answer, event, request)."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other_course = await kit.open_course(pool, second, therapist, now)
    start = (now + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)

    async def book(course_id: uuid.UUID, client: uuid.UUID, key: str) -> bool:
        async with pool.acquire() as conn:
            return await _book_directly(conn, course_id, client, therapist, start, key)

    counts = (
        "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM idempotency_keys),"
        " (SELECT count(*) FROM outbox), (SELECT count(*) FROM summary_requests),"
        " (SELECT count(*) FROM claimed_cells)"
    )
    assert await book(course, first, "first") is True
    before = await pool.fetchrow(counts)
    assert await book(other_course, second, "second") is False
    assert await pool.fetchrow(counts) == before
    assert [s["course_id"] for s in await live_sessions(pool, therapist)] == [course]


def _nearest(free: list[datetime], wanted: datetime) -> list[datetime]:
    return sorted(sorted(free, key=lambda at: (abs(at - wanted), at))[:3])


async def test_a_refusal_offers_the_nearest_free_times_even_days_away(pool, kit) -> None:
    """One hour of work a day: the nearest free times lie on other days, beyond the busy times
    read with the booking, and the refusal still offers the nearest three."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now, kit.hours("09:00-10:00"))
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other_course = await kit.open_course(pool, second, therapist, now)
    listed = await service.free_slots_for(pool, Principal(second, "client"), therapist, now)
    wanted = listed.slots[len(listed.slots) // 2].starts_at
    await service.book_session(pool, Principal(first, "client"), course, wanted, "a", now)
    free = await service.free_slots_for(
        pool, Principal(second, "client"), therapist, now, limit=2000
    )
    with pytest.raises(Conflict) as refused:
        await service.book_session(
            pool, Principal(second, "client"), other_course, wanted, "b", now
        )
    offered = [datetime.fromisoformat(s["starts_at"]) for s in refused.value.extra["alternatives"]]
    assert offered == _nearest([slot.starts_at for slot in free.slots], wanted)
    assert max(abs(at - wanted) for at in offered) > timedelta(hours=23)


async def test_a_refusal_offers_what_is_free_now_however_far_the_last_one_looked(pool, kit) -> None:
    """The alternatives of one refusal lie days away, so the next refusal of that therapist
    reads that far with its statement: it still offers the nearest times free now (not the
    ones offered before, one of which was booked since)."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now, kit.hours("09:00-10:00"))
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other_course = await kit.open_course(pool, second, therapist, now)
    listed = await service.free_slots_for(pool, Principal(second, "client"), therapist, now)
    wanted = listed.slots[len(listed.slots) // 2].starts_at
    await service.book_session(pool, Principal(first, "client"), course, wanted, "a", now)
    offered: list[list[datetime]] = []
    for key in ("b", "c"):
        with pytest.raises(Conflict) as refused:
            await service.book_session(
                pool, Principal(second, "client"), other_course, wanted, key, now
            )
        alternatives = refused.value.extra["alternatives"]
        offered.append([datetime.fromisoformat(s["starts_at"]) for s in alternatives])
        free = await service.free_slots_for(
            pool, Principal(second, "client"), therapist, now, limit=2000
        )
        assert offered[-1] == _nearest([s.starts_at for s in free.slots], wanted)
        if key == "b":  # the nearest alternative is booked before the next refusal
            await service.book_session(
                pool, Principal(first, "client"), course, offered[0][0], "d", now
            )
    assert offered[0][0] not in offered[1]


async def test_a_refusal_in_a_calendar_almost_full_offers_the_few_times_left(pool, kit) -> None:
    """Fewer than three free times in the whole calendar: each refusal offers those left as
    they are at the time of that refusal (the second reads the whole calendar with its
    statement, as the first needed)."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now, kit.hours("09:00-10:00", horizon_days=6))
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other_course = await kit.open_course(pool, second, therapist, now)
    listed = await service.free_slots_for(pool, Principal(first, "client"), therapist, now)
    days = sorted({slot.starts_at.date(): slot.starts_at for slot in listed.slots}.values())
    assert len(days) >= 4
    for n, day in enumerate(days[:-1]):  # every day but the last taken: two times left
        await service.book_session(pool, Principal(first, "client"), course, day, f"a{n}", now)
    left: list[int] = []
    for key in ("b", "c"):
        with pytest.raises(Conflict) as refused:
            await service.book_session(
                pool, Principal(second, "client"), other_course, days[0], key, now
            )
        offered = [
            datetime.fromisoformat(s["starts_at"]) for s in refused.value.extra["alternatives"]
        ]
        free = await service.free_slots_for(
            pool, Principal(second, "client"), therapist, now, limit=2000
        )
        assert offered == _nearest([s.starts_at for s in free.slots], days[0])
        left.append(len(offered))
        if key == "b":  # one taken before the next refusal (the other with it)
            await service.book_session(
                pool, Principal(first, "client"), course, offered[0], f"e{key}", now
            )
    assert left == [2, 0]


async def test_refusals_that_read_a_week_around_the_time_read_the_busy_times_once_per_change(
    pool, kit, monkeypatch
) -> None:
    """A refusal whose alternatives lie further than the busy times read with it reads a
    week around the time; the replica keeps those with the calendar's revision, and the next
    such refusal is not sent them again while it holds. A change's refusal, inside its own
    transaction (whose reads see its writes, which may roll back), keeps nothing."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now, kit.hours("09:00-10:00", horizon_days=6))
    clients = [uuid.uuid4() for _ in range(3)]
    courses = [await kit.open_course(pool, client, therapist, now) for client in clients]
    listed = await service.free_slots_for(pool, Principal(clients[0], "client"), therapist, now)
    days = sorted({slot.starts_at.date(): slot.starts_at for slot in listed.slots}.values())
    assert len(days) >= 5
    for n, day in enumerate(days[:3]):  # three days in a row taken: alternatives further off
        await service.book_session(
            pool, Principal(clients[0], "client"), courses[0], day, f"a{n}", now
        )
    free = [
        s.starts_at
        for s in (
            await service.free_slots_for(pool, Principal(clients[1], "client"), therapist, now)
        ).slots
    ]
    read: list[tuple[int | None, bool]] = []

    async def spying(*args, real=store.calendars_in, **kwargs):
        found = await real(*args, **kwargs)
        read.append((args[4], found["nearby_starts"] is not None))
        return found

    monkeypatch.setattr(store, "calendars_in", spying)
    for client, course in zip(clients[1:], courses[1:], strict=True):
        with pytest.raises(Conflict) as refused:
            await service.book_session(pool, Principal(client, "client"), course, days[1], "b", now)
        offered = [
            datetime.fromisoformat(s["starts_at"]) for s in refused.value.extra["alternatives"]
        ]
        assert offered == _nearest(free, days[1])
    week = (days[1] - timedelta(days=7), days[1] + timedelta(days=7))
    kept = availability.calendar_kept(therapist, *week)
    assert kept is not None
    assert read == [(None, True), (kept.revision, False)]
    async with pool.acquire() as conn, conn.transaction():
        row = await reread_course(conn, courses[2])
        rules = availability.rules_of(await store.get_therapist(conn, therapist))
        answer = await sessions.refuse(conn, sessions.taken_refusal(), rules, row, now, days[1])
    assert read[2:] == [(None, True)]  # sent no revision kept
    assert availability.calendar_kept(therapist, *week) is kept  # and kept nothing
    alternatives = [datetime.fromisoformat(s["starts_at"]) for s in answer.extra["alternatives"]]
    assert alternatives == offered


async def test_the_listing_leaves_out_both_calendars_busy_times_read_in_one_round_trip(
    pool, kit
) -> None:
    """Free slots (one statement: hours and both calendars) leave out the therapist's live
    sessions and the client's with another therapist, not a cancelled one; a therapist
    without hours lists none."""
    now = datetime.now(UTC)
    therapist, elsewhere = await kit.open_therapist(pool, now), await kit.open_therapist(pool, now)
    client, other = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    elsewhere_course = await kit.open_course(pool, client, elsewhere, now)
    others = await kit.open_course(pool, other, therapist, now)
    me = Principal(client, "client")
    listing = await service.free_slots_for(pool, me, therapist, now)
    listed = [s.starts_at for s in listing.slots]
    theirs, mine, cancelled = listed[10], listed[20], listed[30]
    await service.book_session(pool, Principal(other, "client"), others, theirs, "o", now)
    await service.book_session(pool, me, elsewhere_course, mine, "m", now)
    dropped = await service.book_session(pool, me, course, cancelled, "c", now)
    await service.cancel(pool, me, dropped.session_id, now)
    after = [s.starts_at for s in (await service.free_slots_for(pool, me, therapist, now)).slots]
    assert theirs not in after and mine not in after and cancelled in after
    # Listed for sessions as long as the course's: the therapist's own listing defaults to
    # the summary's length, which leaves out a day's last times of a shorter session (and
    # `mine` is one, when the test runs at a time of day that puts it there).
    as_therapist = await service.free_slots_for(
        pool, Principal(therapist, "therapist"), therapist, now, minutes=listing.minutes
    )
    starts = [s.starts_at for s in as_therapist.slots]
    assert theirs not in starts and mine in starts  # the client's calendar is not theirs
    no_hours = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await service.apply_profile(conn, kit.profile(no_hours), now)
    unopened = await service.free_slots_for(pool, Principal(no_hours, "therapist"), no_hours, now)
    assert unopened.slots == []


async def test_a_listing_reads_the_therapists_calendar_again_only_when_it_moved(
    pool, kit, monkeypatch
) -> None:
    """Listings are many more than changes: a replica keeps the therapist's busy times it
    last listed with their calendar's revision, and reads them again only when that moved,
    by a booking here or a change made anywhere else."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    me, other = Principal(uuid.uuid4(), "client"), Principal(uuid.uuid4(), "client")
    await kit.open_course(pool, me.subject, therapist, now)
    theirs = await kit.open_course(pool, other.subject, therapist, now)
    read: list[bool] = []

    def spying(real=store.slot_view):  # a spy: the database still answers
        async def call(*args, **kwargs):
            view = await real(*args, **kwargs)
            read.append(not view["calendar_unchanged"])
            return view

        return call

    monkeypatch.setattr(store, "slot_view", spying())

    async def listed() -> list[datetime]:
        return [s.starts_at for s in (await service.free_slots_for(pool, me, therapist, now)).slots]

    first = await listed()  # nothing booked yet: no revision to keep
    booked = await service.book_session(pool, other, theirs, first[0], "first", now)
    after_booking, again = await listed(), await listed()
    assert first[0] not in after_booking and again == after_booking
    # another replica cancels it (as the database sees it: the revision moves)
    await pool.execute(
        "UPDATE sessions SET status = 'cancelled' WHERE session_id = $1", booked.session_id
    )
    after_cancel = await listed()
    assert first[0] in after_cancel
    assert read == [True, True, False, True], read


async def test_a_refusal_after_a_listing_is_answered_with_the_busy_times_the_listing_read(
    pool, kit, monkeypatch
) -> None:
    """A replica keeps one calendar per therapist, whoever read it: a booking refused right
    after a listing at the same revision is not sent the therapist's busy times again, and
    its alternatives are still the nearest free times."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    me, other = Principal(uuid.uuid4(), "client"), Principal(uuid.uuid4(), "client")
    mine = await kit.open_course(pool, me.subject, therapist, now)
    theirs = await kit.open_course(pool, other.subject, therapist, now)
    slots = (await service.free_slots_for(pool, me, therapist, now, limit=2000)).slots
    wanted = slots[10].starts_at
    await service.book_session(pool, other, theirs, wanted, "theirs", now)
    # This replica knows my course (so the next booking sends one statement) ...
    await service.book_session(pool, me, mine, slots[-1].starts_at, "before", now)
    # ... and lists the calendar as it is now, both bookings in it.
    listed = [s.starts_at for s in (await service.free_slots_for(pool, me, therapist, now)).slots]
    answers: list[dict] = []

    async def spying(*args, real=store.book_one, **kwargs):
        answers.append(answer := await real(*args, **kwargs))
        return answer

    monkeypatch.setattr(store, "book_one", spying)
    with pytest.raises(Conflict) as refused:
        await service.book_session(pool, me, mine, wanted, "mine", now)
    assert refused.value.code == "taken"
    assert [a["verdict"] for a in answers] == ["taken"]
    assert answers[0]["nearby_starts"] is None  # the listing's busy times, still current
    offered = [datetime.fromisoformat(a["starts_at"]) for a in refused.value.extra["alternatives"]]
    nearest = sorted(listed, key=lambda at: (abs(at - wanted), at))[:3]
    assert offered == sorted(nearest)


async def contended(pool: asyncpg.Pool, kit: Any, count: int) -> SimpleNamespace:
    """A therapist and `count` clients with a course each (`who`, `courses`): the time they
    will contend for (`wanted`, the third free one) and, from two hours after it, free times
    to book first, far from it (`elsewhere`)."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    who = [Principal(uuid.uuid4(), "client") for _ in range(count)]
    courses = [await kit.open_course(pool, w.subject, therapist, now) for w in who]
    listed = await service.free_slots_for(pool, who[0], therapist, now, limit=2000)
    wanted = listed.slots[2].starts_at
    elsewhere = [s.starts_at for s in listed.slots if s.starts_at >= wanted + timedelta(hours=2)]
    return SimpleNamespace(
        now=now, therapist=therapist, who=who, courses=courses, wanted=wanted, elsewhere=elsewhere
    )


async def test_one_time_asked_for_at_once_in_one_replica_is_sent_once_and_the_rest_asked_together(
    pool, kit, monkeypatch
) -> None:
    """Eight clients of one replica ask for the same time at once. The first sends the
    booking; the others wait for it, then ask together, in one statement, whether their times
    are still free (instead of each sending a whole booking that blocks on the first's claim):
    one session, seven refusals with alternatives, one booking and one question sent."""
    race = await contended(pool, kit, 8)
    now, who, courses, wanted = race.now, race.who, race.courses, race.wanted
    # Each client has booked another time before (one by one), so this replica knows their
    # courses and the contended bookings decide from memory.
    for n, course in enumerate(courses):
        await service.book_session(pool, who[n], course, race.elsewhere[8 * n], f"before-{n}", now)
    await open_connections(pool, len(who))
    sent = count_calls(monkeypatch, ("book_one", "check_time", "check_times"))

    async def book(n: int) -> str:
        try:
            await service.book_session(pool, who[n], courses[n], wanted, f"once-{n}", now)
        except Conflict as exc:
            assert len(exc.extra["alternatives"]) == 3, exc.extra
            assert wanted.isoformat() not in [a["starts_at"] for a in exc.extra["alternatives"]]
            return exc.code
        return "booked"

    outcomes = await asyncio.gather(*(book(n) for n in range(len(who))))
    assert sorted(outcomes) == ["booked"] + ["taken"] * 7, outcomes
    assert sent == {"book_one": 1, "check_time": 0, "check_times": 1}, sent
    booked = [s["starts_at"] for s in await live_sessions(pool, race.therapist)]
    assert booked.count(wanted) == 1 and len(booked) == 9


async def test_questions_that_come_while_one_is_asked_are_asked_together_after_it(
    pool, kit, monkeypatch
) -> None:
    """Clients of one replica ask for a time this replica has seen taken, one after another:
    the first is asked alone; those that come while its answer is on the way wait for it and
    are asked together in one statement (one question in flight per therapist and window,
    as a database groups commits). Each gets its own refusal with alternatives."""
    race = await contended(pool, kit, 9)
    now, who, courses, wanted = race.now, race.who, race.courses, race.wanted
    for n, course in enumerate(courses):  # this replica knows every course
        await service.book_session(pool, who[n], course, race.elsewhere[8 * n], f"before-{n}", now)
    await service.book_session(pool, who[0], courses[0], wanted, "wanted", now)
    with pytest.raises(Conflict):  # refused: this replica has now seen the busy times there
        await service.book_session(pool, who[1], courses[1], wanted, "seen", now)
    await open_connections(pool, len(who))
    asked, answer = asyncio.Event(), asyncio.Event()

    async def holding(name: str) -> None:
        if name == "check_time":  # the first question: held until the rest came
            asked.set()
            await answer.wait()

    sent = count_calls(monkeypatch, ("book_one", "check_time", "check_times"), holding)

    async def book(n: int) -> str:
        try:
            await service.book_session(pool, who[n], courses[n], wanted, f"again-{n}", now)
        except Conflict as exc:
            assert len(exc.extra["alternatives"]) == 3, exc.extra
            assert wanted.isoformat() not in [a["starts_at"] for a in exc.extra["alternatives"]]
            return exc.code
        return "booked"

    first = asyncio.create_task(book(1))
    await asyncio.wait_for(asked.wait(), 10)
    rest = [asyncio.create_task(book(n)) for n in range(2, 9)]
    await asyncio.sleep(0.2)  # (they decide in memory: all wait behind the first by now)
    answer.set()
    outcomes = await asyncio.gather(first, *rest)
    assert outcomes == ["taken"] * 8, outcomes
    assert sent == {"book_one": 0, "check_time": 1, "check_times": 1}, sent
    assert contexts._ASKING == {}  # every question answered is let go (none kept in a chain)
    booked = [s["starts_at"] for s in await live_sessions(pool, race.therapist)]
    assert booked.count(wanted) == 1 and len(booked) == 10


async def test_bookings_waiting_for_one_in_flight_leave_it_a_connection(
    settings, pool, kit
) -> None:
    """A replica with fewer connections than bookings at once. Two bookings read their
    courses (each holding a connection) and then wait for an overlapping booking of the same
    replica in flight, which is itself waiting for a connection: they give theirs back
    before they wait, so it is sent, books, and they are refused. (Holding them, every
    booking hung for good: with 8 connections and 32 clients, the benchmark did.)"""
    race = await contended(pool, kit, 3)
    now, who, courses, wanted = race.now, race.who, race.courses, race.wanted
    # The first client's course is known to this replica (it booked before): its booking
    # decides from memory and takes a connection only to send. The others' are not known.
    await service.book_session(pool, who[0], courses[0], race.elsewhere[0], "before", now)
    small = await db.create_pool(settings.model_copy(update={"db_pool_min": 2, "db_pool_max": 2}))
    try:
        held = [await small.acquire() for _ in range(2)]  # both busy elsewhere for a moment

        async def book(n: int) -> str:
            try:
                await service.book_session(small, who[n], courses[n], wanted, f"few-{n}", now)
            except Conflict as exc:
                return exc.code
            return "booked"

        # The two unknown courses queue first for a connection to read them; the known one,
        # in flight at once, queues after them.
        unknown = [asyncio.create_task(book(n)) for n in (1, 2)]
        await asyncio.sleep(0.1)
        known = asyncio.create_task(book(0))
        await asyncio.sleep(0.1)
        for conn in held:
            await small.release(conn)
        outcomes = await asyncio.wait_for(asyncio.gather(known, *unknown), 30)
    finally:
        await small.close()
    assert outcomes == ["booked", "taken", "taken"], outcomes
    booked = [s["starts_at"] for s in await live_sessions(pool, race.therapist)]
    assert booked.count(wanted) == 1


async def test_asking_together_answers_each_booking_as_asking_alone_would(pool, kit) -> None:
    """`store.check_times` gives every booking of a therapist the row `store.check_time`
    gives it alone: taken, free, an earlier answer to the key, a stale decision, the client
    busy with another therapist; with the therapist's busy times, or without them when the
    revision kept is the current one."""
    now = datetime.now(UTC)
    therapist, elsewhere = await kit.open_therapist(pool, now), await kit.open_therapist(pool, now)
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other = await kit.open_course(pool, second, therapist, now)
    away = await kit.open_course(pool, first, elsewhere, now)
    free = await service.free_slots_for(pool, Principal(first, "client"), therapist, now, limit=50)
    taken, open_, busy_away = (free.slots[n].starts_at for n in (0, 8, 16))
    await service.book_session(pool, Principal(first, "client"), course, taken, "a1", now)
    await service.book_session(pool, Principal(first, "client"), away, busy_away, "a2", now)
    revisions = await pool.fetchrow(
        "SELECT (SELECT revision FROM courses WHERE course_id = $1) AS mine,"
        " (SELECT revision FROM courses WHERE course_id = $2) AS theirs,"
        " (SELECT revision FROM therapists WHERE therapist_id = $3) AS therapist,"
        " (SELECT revision FROM availability WHERE therapist_id = $3) AS hours,"
        " (SELECT revision FROM calendar_revisions WHERE therapist_id = $3) AS calendar",
        course,
        other,
        therapist,
    )

    client_now = await pool.fetchval(
        "SELECT max(revision) FROM courses WHERE client_id = $1", second
    )

    def question(course_id, revision, client, at, key, client_calendar=None):
        return {
            "decided_on": (
                course_id,
                revision,
                therapist,
                revisions["therapist"],
                revisions["hours"],
            ),
            "client_id": client,
            "span": (at, at + timedelta(minutes=45), 15),
            "key": (client, key),
            "client_calendar": client_calendar,
        }

    asked = [
        question(other, revisions["theirs"], second, taken, "b1"),  # taken
        question(other, revisions["theirs"], second, open_, "b2"),  # free
        question(course, revisions["mine"], first, taken, "a1"),  # earlier
        question(other, revisions["theirs"] - 1, second, open_, "b3"),  # stale
        question(course, revisions["mine"], first, busy_away, "a3"),  # client busy
        question(other, revisions["theirs"], second, taken, "b4", client_now),  # taken
    ]
    near = (now, now + timedelta(days=60))
    async with pool.acquire() as conn:
        # Nothing kept (asked and read at once), the current revision kept (nothing read),
        # an older one kept (asked, then read).
        for calendar in (None, revisions["calendar"], revisions["calendar"] - 1):
            alone = [await store.check_time(conn, near=near, calendar=calendar, **q) for q in asked]
            together = await store.check_times(
                conn, therapist_id=therapist, asked=asked, near=near, calendar=calendar
            )
            assert together == alone
            assert [row["verdict"] for row in together] == [
                "taken",
                "free",
                "earlier",
                "stale",
                "client_busy",
                "taken",
            ]
            assert (together[0]["nearby_starts"] is None) == (calendar == revisions["calendar"])
            assert together[5]["client_starts"] is None  # the client's revision kept
            assert together[0]["client_starts"] == []  # read: no revision kept; none busy


async def test_bookings_of_one_therapist_commit_without_waiting_for_each_other(pool, kit) -> None:
    """Two bookings of one therapist at different times: the second commits while the first
    is still open (their sessions move different slots of the calendar's revision, not one
    row both would lock until commit), and the revision moves with each commit."""
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    first, second = uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, first, therapist, now)
    other_course = await kit.open_course(pool, second, therapist, now)
    day = (now + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    # Sessions whose ids fall in different slots (the last byte, modulo sixty-four), though
    # in the same one of sixteen (as the slots were before).
    one, two = (
        uuid.UUID(int=(uuid.uuid4().int >> 8 << 8) | 1),
        uuid.UUID(int=(uuid.uuid4().int >> 8 << 8) | 17),
    )

    async def revision() -> int | None:
        return await pool.fetchval(
            "SELECT revision FROM calendar_revisions WHERE therapist_id = $1", therapist
        )

    async with pool.acquire() as open_, pool.acquire() as other:
        opened = open_.transaction()
        await opened.start()
        assert await _book_directly(open_, course, first, therapist, day, "k1", one)
        assert await asyncio.wait_for(
            _book_directly(
                other, other_course, second, therapist, day + timedelta(hours=2), "k2", two
            ),
            timeout=10,
        )
        between = await revision()
        await opened.commit()
    after = await revision()
    assert between is not None and after is not None and after > between
    assert len(await live_sessions(pool, therapist)) == 2
