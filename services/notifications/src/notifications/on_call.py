"""Worker task: can a crisis alert reach the clinicians on call now outside the app?

An escalated intake alerts the clinicians on call (the roster, by shift) urgently: by
e-mail and SMS to whatever addresses they saved, and in the in-app inbox. A clinician who
saved none gets the alert in-app only, where nobody may be looking. The gauge
`samtal_on_call_clinicians_reachable` counts those on call now who would get it by e-mail
or SMS; an operator alerts on 0 while the roster has somebody
(deploy/prometheus/alerts.yaml: OnCallClinicianUnreachable). The log line names the
clinicians (ids only) who would not, which is whom to ask to save their contacts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import asyncpg
import structlog
from prometheus_client import Gauge

from chassis.app import Runtime
from chassis.periodic import periodic
from notifications import store
from notifications.domain.contacts import OnCallRoster, reached_outside_the_app

if TYPE_CHECKING:
    from notifications.settings import Settings

log = structlog.get_logger("notifications.on_call")

REACHABLE = Gauge(
    "samtal_on_call_clinicians_reachable",
    "Clinicians on call now whom a crisis alert reaches by e-mail or SMS (0: in-app only)",
)
EVERY = timedelta(minutes=1)


async def check(
    conn: asyncpg.Connection, roster: OnCallRoster | None, now: datetime, *, sms_available: bool
) -> int:
    """Sets the gauge to how many clinicians on call at `now` a crisis alert reaches outside
    the app, logs the others, and returns the count."""
    on_call = roster.on_call(now) if roster is not None else []
    contacts = await store.contacts_of_people(conn, on_call)
    unreachable = [
        clinician
        for clinician in on_call
        if not reached_outside_the_app(contacts.get(clinician), sms_available=sms_available)
    ]
    reachable = len(on_call) - len(unreachable)
    REACHABLE.set(reachable)
    if unreachable:
        log.warning(
            "on-call clinicians a crisis alert reaches in-app only: no e-mail or mobile saved",
            clinicians=[str(c) for c in unreachable],
            reachable=reachable,
        )
    return reachable


async def check_now(runtime: Runtime) -> None:
    """`check` with the roster of the settings, at the time it is now."""
    assert runtime.pool is not None
    settings = cast("Settings", runtime.settings)
    async with runtime.pool.acquire() as conn:
        await check(
            conn,
            settings.on_call_roster,
            datetime.now(UTC),
            sms_available=settings.sms_url is not None,
        )


# Every minute: contacts change through the api, shifts with the clock.
watch = periodic("on-call-watch", lambda _: EVERY.total_seconds(), check_now)
