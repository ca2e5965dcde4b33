"""Worker task: rights requests (export, erasure) still running past their due time.

A request is due `service.DUE_AFTER` after it was made; one that is not done by then
means a service has not answered (its worker down, its consumer stuck on a dead letter).
The gauge `samtal_rights_requests_overdue{kind}` is what an operator alerts on
(deploy/prometheus/alerts.yaml: RightsRequestOverdue); the log line names the request
and the services it still waits for, which is where to look.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from prometheus_client import Gauge

from chassis.app import Runtime
from chassis.periodic import periodic
from notifications import store
from notifications.service import ANSWERING

log = structlog.get_logger("notifications.overdue")

OVERDUE = Gauge(
    "samtal_rights_requests_overdue",
    "Export or erasure requests still running past their due time (0 when none)",
    ["kind"],
)
EVERY = timedelta(minutes=5)
KINDS = ("export", "erasure")


async def check(conn: asyncpg.Connection, now: datetime) -> list[Any]:
    """Sets the gauge and logs each overdue request; returns their rows."""
    rows = list(await store.overdue_rights_requests(conn, now))
    counts = Counter(r["kind"] for r in rows)
    for kind in KINDS:
        OVERDUE.labels(kind=kind).set(counts[kind])
    for r in rows:
        log.error(
            "rights request overdue",
            request_id=str(r["request_id"]),
            kind=r["kind"],
            due_at=r["due_at"].isoformat(),
            overdue_minutes=int((now - r["due_at"]).total_seconds() // 60),
            waiting_for=sorted(ANSWERING - set(r["answers"])),
        )
    return rows


async def check_now(runtime: Runtime) -> None:
    """`check` at the time it is now."""
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn:
        await check(conn, datetime.now(UTC))


watch = periodic("overdue-watch", lambda _: EVERY.total_seconds(), check_now)
