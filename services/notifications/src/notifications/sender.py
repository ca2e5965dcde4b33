"""The sender: the worker task that delivers due messages and sends their e-mails and SMS.

Each round:
1. deliver due messages, urgent first, in one transaction (rows locked FOR UPDATE
   SKIP LOCKED, so several workers share the work): render each in the language its
   recipient has *now*, put it in their in-app inbox, and create its e-mail/SMS
   deliveries for the channels their contacts allow now;
2. claim due deliveries, urgent first, by moving them a lease ahead; send them outside
   any transaction, every urgent one before any normal one; record sent, a retry with
   backoff, or failed (kept, listed for operators, re-sendable).

Crisis first: the handlers NOTIFY on commit, which wakes the sender at once; otherwise
it sleeps until the next reminder or retry is due, and at most `sender_poll_s` (a
safety net for a missed NOTIFY). A crisis message waits at most for
the sends already in flight (one batch), never behind the queue.

At-least-once: a crash after a send and before its outcome is recorded sends that
delivery again when its lease runs out. E-mails carry a Message-ID stable per delivery
and SMS an Idempotency-Key, so mail programs and providers can drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import asyncpg
import httpx
import jinja2
import structlog
from prometheus_client import Counter, Gauge

from chassis.app import Runtime
from notifications import store
from notifications.channels import EmailChannel, SendFailed, SmsChannel
from notifications.domain.contacts import delivery_channels
from notifications.domain.delivery import Delivery, record_failure, record_sent
from notifications.domain.plan import reminder_has_lapsed
from notifications.domain.render import UnknownTemplate, render
from notifications.domain.words import DEFAULT_LANGUAGE, DEFAULT_TIME_ZONE

if TYPE_CHECKING:
    from notifications.settings import Settings

log = structlog.get_logger("notifications.sender")

SENT = Counter("samtal_notifications_sent_total", "Messages sent", ["channel", "priority"])
ON_CALL = Gauge(
    "samtal_on_call_clinicians",
    "Clinicians on the on-call roster: 0 means a crisis alert reaches no clinician",
)
FAILED_ATTEMPTS = Counter(
    "samtal_notifications_failed_attempts_total",
    "Failed send attempts, by what happens next",
    ["channel", "next"],
)


async def run(runtime: Runtime) -> None:
    """Worker task: deliver and send until cancelled."""
    settings = cast("Settings", runtime.settings)
    if runtime.pool is None:
        raise RuntimeError("the sender needs the database pool")
    async with httpx.AsyncClient() as client:
        sender = Sender(
            settings, runtime.pool, EmailChannel(settings), SmsChannel(settings, client)
        )
        await sender.run()


class Sender:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        email: EmailChannel,
        sms: SmsChannel,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.email = email
        self.sms = sms
        self.rng = rng
        self.policy = settings.retry_policy
        self.claim = uuid.uuid4()  # this sender's claims; a takeover makes them stale
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.sender_concurrency)

    def _on_notify(self, *_: object) -> None:
        self.wake.set()

    async def run(self) -> None:
        roster = self.settings.on_call_roster
        ON_CALL.set(len(roster.clinician_ids) if roster else 0)
        if roster is None:
            log.error("no on-call clinicians configured: escalations alert no clinician")
        if not self.sms.available:
            log.warning("no SMS provider configured: messages go by e-mail and in-app only")
        channel = store.wake_channel(self.settings.db_schema)
        while True:
            try:
                async with self.pool.acquire() as listener:
                    await listener.add_listener(channel, self._on_notify)
                    try:
                        await self._work_forever()
                    finally:
                        with contextlib.suppress(Exception):
                            await listener.remove_listener(channel, self._on_notify)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: wait, then go on
                log.warning("sender lost its database; retrying", error=str(exc))
                await asyncio.sleep(1.0)

    async def _work_forever(self) -> None:
        while True:
            self.wake.clear()
            if not await self.round():
                idle = await self._idle_for()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), idle)

    async def _idle_for(self) -> float:
        """Until the next reminder or retry is due, a NOTIFY comes, or at most the poll."""
        async with self.pool.acquire() as conn:
            due_in = await store.seconds_to_next_due(conn)
        poll = self.settings.sender_poll_s
        return poll if due_in is None else min(poll, max(due_in, 0.01))

    async def round(self) -> bool:
        """One pass; True when there may be more work right away."""
        delivered = await self.deliver_due()
        sent = await self.send_due()
        return delivered >= self.settings.sender_batch_size or sent > 0

    # ----------------------------------------------------------------------- delivering

    async def deliver_due(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            due = await store.lock_due_messages(conn, self.settings.sender_batch_size)
            now = datetime.now(UTC)
            for message in due:
                await self._deliver(conn, message, now)
        return len(due)

    async def _deliver(self, conn: asyncpg.Connection, m: store.DueMessage, now: datetime) -> None:
        if reminder_has_lapsed(m.reminder_key, m.context, now):
            await store.set_message_aside(conn, m.id, "dropped", "session_started")
            return
        contacts = m.contacts
        language = contacts.language if contacts else DEFAULT_LANGUAGE
        time_zone = contacts.time_zone if contacts else DEFAULT_TIME_ZONE
        try:
            rendered = render(m.template, language, m.context, time_zone=time_zone)
        except (UnknownTemplate, jinja2.TemplateError) as exc:
            # A template bug: keep the message, with why, instead of blocking the queue.
            log.error("message cannot be rendered", message_id=str(m.id), error=str(exc))
            await store.set_message_aside(conn, m.id, "failed", f"render: {exc}")
            return
        channels = delivery_channels(contacts, m.priority, sms_available=self.sms.available)
        await store.deliver_message(conn, m.id, language, rendered, channels)

    # ----------------------------------------------------------------------- sending

    async def send_due(self) -> int:
        async with self.pool.acquire() as conn:
            claimed = await store.claim_deliveries(
                conn, self.settings.sender_batch_size, self.settings.sender_lease_s, self.claim
            )
        urgent = [c for c in claimed if c.delivery.priority == "urgent"]
        normal = [c for c in claimed if c.delivery.priority != "urgent"]
        for group in (urgent, normal):  # every urgent send is done before a normal one starts
            if not group:
                continue
            outcomes = await asyncio.gather(*(self._send(c) for c in group))
            # Not recorded (the database is away): the lease runs out, they go again.
            async with self.pool.acquire() as conn:
                recorded = await store.record_deliveries(
                    conn, self.claim, [(c.id, o) for c, o in zip(group, outcomes, strict=True)]
                )
            for c in group:
                if c.id not in recorded:
                    log.warning("delivery was taken over by another sender", delivery_id=c.id)
        return len(claimed)

    async def _send(self, c: store.ClaimedDelivery) -> Delivery:
        """Send one delivery; its outcome (sent, retry later or failed), never an error."""
        async with self.slots:
            try:
                await self._send_on_channel(c)
            except SendFailed as exc:
                return self._failed(c, str(exc), permanent=exc.permanent)
            except Exception as exc:  # an unexpected error: visible, and tried again
                return self._failed(c, f"{type(exc).__name__}: {exc}", permanent=False)
        SENT.labels(c.channel, c.delivery.priority).inc()
        return record_sent(c.delivery, datetime.now(UTC))

    async def _send_on_channel(self, c: store.ClaimedDelivery) -> None:
        if c.address is None:
            what = "e-mail address" if c.channel == "email" else "phone number"
            raise SendFailed(f"the recipient has removed their {what}", permanent=True)
        if c.channel == "email":
            await self.email.send(c.id, c.address, c.subject, c.body, c.language, c.attachment)
        else:
            await self.sms.send(c.id, c.address, c.sms)

    def _failed(self, c: store.ClaimedDelivery, error: str, *, permanent: bool) -> Delivery:
        outcome = record_failure(
            c.delivery, datetime.now(UTC), error, self.rng, permanent=permanent, policy=self.policy
        )
        nxt = "retry" if outcome.state == "pending" else "failed"
        FAILED_ATTEMPTS.labels(c.channel, nxt).inc()
        log.warning(
            "send failed",
            delivery_id=c.id,
            channel=c.channel,
            next=nxt,
            attempts=outcome.attempts,
            error=error,
        )
        return outcome
