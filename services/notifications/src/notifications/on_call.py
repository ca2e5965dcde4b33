"""Worker task: can a crisis alert reach the clinicians on call now outside the app?

An escalated intake alerts the clinicians on call (the roster, by shift) urgently: by
e-mail and SMS to whatever addresses they saved, and in the in-app inbox. A clinician who
saved none gets the alert in-app only, where nobody may be looking. The gauge
`samtal_on_call_clinicians_reachable` counts those on call now who would get it by e-mail
or SMS; an operator alerts on 0 while the roster has somebody
(deploy/prometheus/alerts.yaml: OnCallClinicianUnreachable). The log line names the
clinicians (ids only) who would not, which is whom to ask to save their contacts.

The same round hands escalations over: an intake escalated while others were on call, and
still awaiting triage when a new shift begins, alerts the clinicians of that shift too
(`hand_over`); the alerted ones keep their access to it in matching.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from chassis.app import Runtime
from chassis.periodic import periodic
from contracts import decode
from contracts.events import IntakeEscalated
from notifications import store
from notifications.domain.contacts import OnCallRoster, reached_outside_the_app
from notifications.domain.plan import NotificationPlan, plan

if TYPE_CHECKING:
    from notifications.settings import Settings

log = structlog.get_logger("notifications.on_call")

REACHABLE = Gauge(
    "samtal_on_call_clinicians_reachable",
    "Clinicians on call now whom a crisis alert reaches by e-mail or SMS (0: in-app only)",
)
HANDED_OVER = Counter(
    "samtal_crisis_alerts_handed_over_total",
    "Crisis alerts to clinicians whose shift began after the escalation, the intake still"
    " awaiting triage",
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


async def hand_over(conn: asyncpg.Connection, roster: OnCallRoster | None, now: datetime) -> int:
    """In the caller's transaction: alert the clinicians on call at `now` about each
    escalated intake still awaiting triage that they were not alerted about (their shift
    began after the escalation). The escalation is planned again at `now`: each clinician's
    alert is one message (its dedup key), so nobody is alerted twice; the client's crisis
    information is not planned again. Returns how many clinicians were alerted."""
    if roster is None:
        return 0
    alerted = 0
    for document in await store.escalations_awaiting_triage(conn):
        escalation = decode(document, IntakeEscalated)
        to_clinicians = [
            m for m in plan(escalation, roster, now).messages if m.recipient_role == "clinician"
        ]
        handed = await store.save_plan(conn, escalation, NotificationPlan(messages=to_clinicians))
        if handed:
            HANDED_OVER.inc(handed)
            log.warning(
                "escalated intake still awaiting triage: alerted the clinicians now on call",
                intake_id=str(escalation.payload.intake_id),
                alerted=handed,
            )
        alerted += handed
    return alerted


async def check_now(runtime: Runtime) -> None:
    """`check` with the roster of the settings, at the time it is now, and `hand_over`."""
    assert runtime.pool is not None
    settings = cast("Settings", runtime.settings)
    now = datetime.now(UTC)
    async with runtime.pool.acquire() as conn:
        await check(conn, settings.on_call_roster, now, sms_available=settings.sms_url is not None)
        async with conn.transaction():
            await hand_over(conn, settings.on_call_roster, now)


# Every minute: contacts change through the api, shifts with the clock.
watch = periodic("on-call-watch", lambda _: EVERY.total_seconds(), check_now)
