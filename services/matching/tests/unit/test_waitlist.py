from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from matching.domain.waitlist import WaitingIntake, waitlist_order

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def test_first_come_first_served() -> None:
    early = WaitingIntake(uuid.UUID(int=9), T0)
    late = WaitingIntake(uuid.UUID(int=1), T0 + timedelta(seconds=1))
    assert waitlist_order([late, early]) == [early, late]


def test_same_time_falls_to_intake_id() -> None:
    a = WaitingIntake(uuid.UUID(int=1), T0)
    b = WaitingIntake(uuid.UUID(int=2), T0)
    assert waitlist_order([b, a]) == [a, b]


@given(
    st.lists(
        st.builds(
            WaitingIntake,
            st.uuids(),
            st.integers(0, 10_000).map(lambda s: T0 + timedelta(seconds=s)),
        ),
        max_size=20,
    )
)
def test_order_does_not_depend_on_input_order(items: list[WaitingIntake]) -> None:
    ordered = waitlist_order(items)
    assert ordered == waitlist_order(list(reversed(items)))
    assert all(a.waitlisted_at <= b.waitlisted_at for a, b in pairwise(ordered))
