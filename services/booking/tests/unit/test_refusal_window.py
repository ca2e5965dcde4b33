"""Where a booking that may be refused reads the busy times: the same window for a day."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from booking.domain.availability import AvailabilityRules
from booking.service.sessions import refusal_window
from booking.store import NEARBY

NOW = datetime(2026, 3, 2, 8, tzinfo=UTC)


def test_the_times_of_one_utc_day_share_one_window_holding_a_day_either_side() -> None:
    rules, therapist = AvailabilityRules(weekly={}), uuid.uuid4()
    day = datetime(2026, 3, 5, tzinfo=UTC)
    windows = {
        refusal_window(rules, therapist, NOW, day + timedelta(hours=h, minutes=m))
        for h, m in ((0, 0), (9, 15), (23, 45))
    }
    assert windows == {(day - NEARBY, day + timedelta(days=1) + NEARBY)}
    at = day + timedelta(hours=23, minutes=45)
    low, high = windows.pop()
    assert low <= at - NEARBY and at + NEARBY <= high
    following = refusal_window(rules, therapist, NOW, day + timedelta(days=1))
    assert following == (day + timedelta(days=1) - NEARBY, day + timedelta(days=2) + NEARBY)
