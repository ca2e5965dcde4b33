"""The waiting gauges: the oldest intake awaiting triage, the waitlist's length, and the
therapists not offered because their profile in the read model has a hole."""

from __future__ import annotations

import uuid

from prometheus_client import Gauge

from chassis.app import Runtime
from chassis.periodic import periodic
from matching import store
from matching.service.common import log

AWAITING_TRIAGE_OLDEST = Gauge(
    "samtal_intakes_awaiting_triage_oldest_seconds",
    "How long the oldest high-risk intake has waited for a clinician's triage (0: none)",
)
WAITLISTED = Gauge("samtal_intakes_waitlisted", "Intakes waiting on the waitlist")
INCOMPLETE = Gauge(
    "samtal_matching_therapists_incomplete",
    "Therapists offered in matching's read model whose profile has a hole: never offered to"
    " intakes until it is whole",
)
_incomplete_seen: list[uuid.UUID] = []  # (logged when it changes, not every round)


async def refresh_waiting_figures(runtime: Runtime) -> None:
    """Sets the waiting gauges from the database (a page fires when a crisis intake waits
    too long for triage; deploy/prometheus/alerts.yaml)."""
    pool = runtime.pool
    assert pool is not None
    async with pool.acquire() as conn:
        figures = await store.waiting_figures(conn)
        incomplete = await store.incomplete_therapists(conn)
    AWAITING_TRIAGE_OLDEST.set(figures["triage_oldest_s"])
    WAITLISTED.set(figures["waitlisted"])
    INCOMPLETE.set(len(incomplete))
    if incomplete != _incomplete_seen:
        _incomplete_seen[:] = incomplete
        if incomplete:
            log.warning(
                "therapists not offered: their profile in the read model has a hole",
                therapists=[str(t) for t in incomplete],
            )


# Worker task: the waiting gauges kept fresh every `waiting_watch_s`.
waiting_watch = periodic(
    "waiting-watch",
    lambda settings: getattr(settings, "waiting_watch_s", 15.0),
    refresh_waiting_figures,
)
