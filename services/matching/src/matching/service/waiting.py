"""The waiting gauges: the oldest intake awaiting triage, and the waitlist's length."""

from __future__ import annotations

import asyncio

from prometheus_client import Gauge

from chassis.app import Runtime
from matching import store
from matching.service.common import log

AWAITING_TRIAGE_OLDEST = Gauge(
    "samtal_intakes_awaiting_triage_oldest_seconds",
    "How long the oldest high-risk intake has waited for a clinician's triage (0: none)",
)
WAITLISTED = Gauge("samtal_intakes_waitlisted", "Intakes waiting on the waitlist")


async def waiting_watch(runtime: Runtime) -> None:
    """Worker task: keeps the waiting gauges fresh (a page fires when a crisis intake waits
    too long for triage; deploy/prometheus/alerts.yaml)."""
    pool = runtime.pool
    assert pool is not None
    every: float = getattr(runtime.settings, "waiting_watch_s", 15.0)
    while True:
        try:
            async with pool.acquire() as conn:
                figures = await store.waiting_figures(conn)
            AWAITING_TRIAGE_OLDEST.set(figures["triage_oldest_s"])
            WAITLISTED.set(figures["waitlisted"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: the gauges keep their last value
            log.warning("waiting figures unavailable", error=str(exc))
        await asyncio.sleep(every)
