"""The waiting gauges: the oldest intake awaiting triage, and the waitlist's length."""

from __future__ import annotations

from prometheus_client import Gauge

from chassis.app import Runtime
from chassis.periodic import periodic
from matching import store

AWAITING_TRIAGE_OLDEST = Gauge(
    "samtal_intakes_awaiting_triage_oldest_seconds",
    "How long the oldest high-risk intake has waited for a clinician's triage (0: none)",
)
WAITLISTED = Gauge("samtal_intakes_waitlisted", "Intakes waiting on the waitlist")


async def refresh_waiting_figures(runtime: Runtime) -> None:
    """Sets the waiting gauges from the database (a page fires when a crisis intake waits
    too long for triage; deploy/prometheus/alerts.yaml)."""
    pool = runtime.pool
    assert pool is not None
    async with pool.acquire() as conn:
        figures = await store.waiting_figures(conn)
    AWAITING_TRIAGE_OLDEST.set(figures["triage_oldest_s"])
    WAITLISTED.set(figures["waitlisted"])


# Worker task: the waiting gauges kept fresh every `waiting_watch_s`.
waiting_watch = periodic(
    "waiting-watch",
    lambda settings: getattr(settings, "waiting_watch_s", 15.0),
    refresh_waiting_figures,
)
