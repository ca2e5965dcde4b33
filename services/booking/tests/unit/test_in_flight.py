"""Bookings of one replica in flight: one overlapping another waits for it, others do not."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from booking.service import contexts

NINE = datetime(2026, 3, 2, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)


async def never_waits() -> None:
    raise AssertionError("gave back its connection without waiting")


async def gives_back() -> None:
    """(nothing held in these tests)"""


async def test_a_booking_overlapping_one_in_flight_waits_for_it_and_says_so() -> None:
    therapist = uuid.uuid4()
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> contexts.Flight:
        with contexts.in_flight(therapist, NINE, NINE + HOUR) as flight:
            order.append("first sends")
            await release.wait()
            flight.booked = True
            order.append("first booked")
        return flight

    async def giving_back() -> None:
        order.append("second gives back its connection")

    async def second() -> tuple[bool, contexts.Flight | None]:
        answer = await contexts.after_overlapping(
            therapist, NINE + HOUR / 2, NINE + 2 * HOUR, before_waiting=giving_back
        )
        order.append("second goes on")
        return answer

    sending = asyncio.create_task(first())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.01)
    # Before it waits, it gives back its connection: the first may need one to send.
    assert order == ["first sends", "second gives back its connection"]
    assert not waiting.done()
    release.set()
    assert await waiting == (True, await sending)  # it waited, for the one that booked
    assert order[2:] == ["first booked", "second goes on"]


async def test_other_times_other_therapists_and_touching_times_do_not_wait() -> None:
    therapist = uuid.uuid4()
    with contexts.in_flight(therapist, NINE, NINE + HOUR):
        # Each returns without waiting (a wait would hang here: the block never ends while
        # it waits).
        assert await asyncio.wait_for(
            contexts.after_overlapping(
                therapist, NINE + HOUR, NINE + 2 * HOUR, before_waiting=never_waits
            ),
            1,
        ) == (False, None)
        assert await asyncio.wait_for(
            contexts.after_overlapping(therapist, NINE - HOUR, NINE, before_waiting=never_waits),
            1,
        ) == (False, None)
        assert await asyncio.wait_for(
            contexts.after_overlapping(uuid.uuid4(), NINE, NINE + HOUR, before_waiting=never_waits),
            1,
        ) == (False, None)


async def test_a_failed_booking_ends_the_wait_and_a_cancelled_waiter_cancels_nothing() -> None:
    therapist = uuid.uuid4()
    release = asyncio.Event()

    async def failing() -> None:
        with contexts.in_flight(therapist, NINE, NINE + HOUR):
            await release.wait()
            raise RuntimeError("the database went away")

    sending = asyncio.create_task(failing())
    await asyncio.sleep(0)
    patient = asyncio.create_task(
        contexts.after_overlapping(therapist, NINE, NINE + HOUR, before_waiting=gives_back)
    )
    impatient = asyncio.create_task(
        contexts.after_overlapping(therapist, NINE, NINE + HOUR, before_waiting=gives_back)
    )
    await asyncio.sleep(0.01)
    impatient.cancel()
    await asyncio.sleep(0.01)
    assert not patient.done()  # the cancelled one did not end the wait of the others
    release.set()
    with pytest.raises(RuntimeError):
        await sending
    assert await patient == (True, None)  # it waited, for one that did not book
    with pytest.raises(asyncio.CancelledError):
        await impatient
    again = contexts.after_overlapping(therapist, NINE, NINE + HOUR, before_waiting=never_waits)
    assert await again == (False, None)
