"""The sender: the worker task that delivers due messages and sends their e-mails and SMS.

Three kinds of coroutine share the work:
- the filler, in rounds: (1) delivers due messages, urgent first, in one transaction
  (rows locked FOR UPDATE SKIP LOCKED, so several workers share the work): renders each
  in the language its recipient has *now*, puts it in their in-app inbox, and creates its
  e-mail/SMS deliveries for the channels their contacts allow now; (2) claims due
  deliveries, urgent first, by moving them a lease ahead, and queues them here, keeping
  a few batches queued so the senders never wait for the database;
- `sender_concurrency` senders: each takes the most urgent queued delivery and sends it,
  outside any transaction, on a kept SMTP connection (or the pooled SMS client);
- the recorder writes the outcomes (sent, a retry with backoff, or failed: kept, listed
  for operators, re-sendable) in one statement for whatever has finished meanwhile; and
  the renewer keeps the claims of what is queued or under way alive.

Crisis first: the handlers NOTIFY on commit, which wakes the filler at once; otherwise it
sleeps until the next reminder or retry is due, or the queue runs low, and at most
`sender_poll_s` (a safety net for a missed NOTIFY). Urgent deliveries are claimed even
when the queue is full and are sent at once, each on its own task and on one of the
`sender_urgent_connections` the e-mail channel keeps beyond the senders' (the senders
never hold more than `sender_concurrency`): a crisis message waits for no send under way,
never behind the queue. With no such connections they go to the queue's head.

At-least-once: a crash after a send and before its outcome is recorded sends that
delivery again once its lease runs out (`sender_lease_s`, renewed while this sender
lives: another sender takes over a dead one's deliveries within about that long). E-mails
carry a Message-ID stable per delivery and SMS an Idempotency-Key, so mail programs and
providers can drop the repeat.
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
import structlog
from prometheus_client import Counter, Gauge

from chassis import db
from chassis.app import Runtime
from notifications import store
from notifications.channels import EmailChannel, SendFailed, SmsChannel
from notifications.domain.contacts import delivery_channels
from notifications.domain.delivery import Delivery, dispatch_order, record_failure, record_sent
from notifications.domain.plan import reminder_has_lapsed
from notifications.domain.render import NotRendered, render_in_any_language
from notifications.domain.words import DEFAULT_LANGUAGE, DEFAULT_TIME_ZONE

if TYPE_CHECKING:
    from notifications.settings import Settings

log = structlog.get_logger("notifications.sender")

SENT = Counter("samtal_notifications_sent_total", "Messages sent", ["channel", "priority"])
ON_CALL = Gauge(
    "samtal_on_call_clinicians",
    "Clinicians on the on-call roster: 0 means a crisis alert reaches no clinician",
)
RENDER_FAILURES = Counter(
    "samtal_notifications_render_failures_total",
    "Messages a template could not render, by template and language (then written in another"
    " language, or set aside as failed when none could)",
    ["template", "language"],
)
FAILED_ATTEMPTS = Counter(
    "samtal_notifications_failed_attempts_total",
    "Failed send attempts, by priority (urgent: a crisis) and what happens next",
    ["channel", "priority", "next"],
)


async def run(runtime: Runtime) -> None:
    """Worker task: deliver and send until cancelled."""
    settings = cast("Settings", runtime.settings)
    if runtime.pool is None:
        raise RuntimeError("the sender needs the database pool")
    connections = settings.send_connections
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits) as client:
        sender = Sender(
            settings, runtime.pool, EmailChannel(settings), SmsChannel(settings, client)
        )
        await sender.run()


# Queued in priority order (`dispatch_order`: urgent first, then the longest waiting).
_Queued = tuple[int, datetime, int, store.ClaimedDelivery]


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
        self.queue: asyncio.PriorityQueue[_Queued] = asyncio.PriorityQueue()
        # Enough queued that senders never wait for a claim; refilled at half.
        self.queue_target = max(settings.sender_batch_size, 2 * settings.sender_concurrency)
        self.held: set[int] = set()  # claimed and not yet recorded: renewed while held
        self.outcomes: list[tuple[store.ClaimedDelivery, Delivery]] = []
        self.finished = asyncio.Event()  # outcomes wait to be recorded
        # While running, urgent deliveries do not wait for one of the senders: each is sent
        # at once on a connection the e-mail channel keeps beyond `sender_concurrency`.
        self.urgent_lane = False
        self.urgent_sends: set[asyncio.Task[None]] = set()

    def _on_notify(self, *_: object) -> None:
        self.wake.set()

    async def run(self) -> None:
        roster = self.settings.on_call_roster
        ON_CALL.set(len(roster.clinician_ids) if roster else 0)
        if roster is None:
            log.error("no on-call clinicians configured: escalations alert no clinician")
        if not self.sms.available:
            log.warning("no SMS provider configured: messages go by e-mail and in-app only")
        helpers = [
            *(
                asyncio.create_task(self._sending())
                for _ in range(self.settings.sender_concurrency)
            ),
            asyncio.create_task(self._recording()),
            asyncio.create_task(self._renewing()),
        ]
        self.urgent_lane = self.settings.sender_urgent_connections > 0
        try:
            await self._fill_forever()
        finally:
            self.urgent_lane = False
            helpers += self.urgent_sends
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            # Stopping: what was sent is recorded, what was not is handed back at once.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._hand_back(), 5)
            await self.email.close()

    async def _fill_forever(self) -> None:
        channel = store.wake_channel(self.settings.db_schema)
        while True:
            try:
                async with (
                    self.pool.acquire() as listener,
                    db.listening(
                        listener,
                        {channel: self._on_notify},
                        self.wake,
                        answer_within=self.settings.db_held_timeout_s,
                    ) as feed,
                ):
                    while True:
                        self.wake.clear()
                        if not await self.round():
                            await feed.wait(await self._idle_for())
                        # Closed (it woke us): a crisis's wake-up would be lost with it.
                        feed.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: wait, then go on
                log.warning("sender lost its database; retrying", error=str(exc))
                await asyncio.sleep(1.0)

    async def _idle_for(self) -> float:
        """Until the next reminder or retry is due, a NOTIFY comes, or at most the poll."""
        async with self.pool.acquire() as conn:
            due_in = await store.seconds_to_next_due(conn)
        poll = self.settings.sender_poll_s
        return poll if due_in is None else min(poll, max(due_in, 0.01))

    async def round(self) -> bool:
        """One pass of the filler; True when there may be more work right away.

        Urgent messages are delivered and claimed before a batch of normal ones is
        rendered: a crisis waits at most for the batch under way when it came in."""
        await self.deliver_due(urgent_only=True)
        claimed, room = await self.claim_due()
        delivered = await self.deliver_due()
        return delivered >= self.settings.sender_batch_size or (room > 0 and claimed >= room)

    # ----------------------------------------------------------------------- delivering

    async def deliver_due(self, *, urgent_only: bool = False) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            due = await store.lock_due_messages(
                conn, self.settings.sender_batch_size, urgent_only=urgent_only
            )
            now = datetime.now(UTC)
            delivered = []
            for message in due:
                ready = await self._deliver(conn, message, now)
                if ready is not None:
                    delivered.append(ready)
            await store.deliver_messages(conn, delivered)
        return len(due)

    async def _deliver(
        self, conn: asyncpg.Connection, m: store.DueMessage, now: datetime
    ) -> store.DeliveredMessage | None:
        """The message rendered for its recipient, or None when it is set aside."""
        if reminder_has_lapsed(m.reminder_key, m.context, now):
            await store.set_message_aside(conn, m.id, "dropped", "session_started")
            return None
        contacts = m.contacts
        language = contacts.language if contacts else DEFAULT_LANGUAGE
        time_zone = contacts.time_zone if contacts else DEFAULT_TIME_ZONE
        try:
            written_in, rendered, failed = render_in_any_language(
                m.template, language, m.context, time_zone=time_zone
            )
        except NotRendered as exc:
            failed, written_in = exc.tried, None
        for failed_in, error in failed:  # a template bug, in one language or in all
            RENDER_FAILURES.labels(m.template, failed_in).inc()
            log.error(
                "message cannot be rendered in a language",
                message_id=str(m.id),
                template=m.template,
                language=failed_in,
                error=f"{type(error).__name__}: {error}",
                written_in=written_in,
            )
        if written_in is None:
            # Kept, with why, for operators to render again once fixed (GET /messages/failed);
            # the rest of the queue goes on.
            await store.set_message_aside(conn, m.id, "failed", f"render: {failed[0][1]!r}")
            return None
        channels = delivery_channels(contacts, m.priority, sms_available=self.sms.available)
        return store.DeliveredMessage(m.id, written_in, rendered, channels)

    # ----------------------------------------------------------------------- sending

    async def claim_due(self) -> tuple[int, int]:
        """(claimed, room there was in the queue). Urgent deliveries are claimed even when
        the queue is full: they go to its head."""
        room = min(self.queue_target - self.queue.qsize(), self.settings.sender_batch_size)
        async with self.pool.acquire() as conn:
            claimed = await store.claim_deliveries(
                conn,
                room if room > 0 else self.settings.sender_batch_size,
                self.settings.sender_lease_s,
                self.claim,
                urgent_only=room <= 0,
            )
        for c in claimed:
            self.held.add(c.id)
            if self.urgent_lane and c.delivery.priority == "urgent":
                # A crisis message waits for no sender to finish its current send.
                task = asyncio.create_task(self._send_for_recording(c))
                self.urgent_sends.add(task)
                task.add_done_callback(self.urgent_sends.discard)
            else:
                self.queue.put_nowait(
                    (*dispatch_order(c.delivery.priority, c.delivery.due_at), c.id, c)
                )
        return len(claimed), room

    async def send_due(self) -> int:
        """Claim what is due and send it all now (for tests and tools; run() pipelines)."""
        claimed, _ = await self.claim_due()
        while not self.queue.empty():
            *_, c = self.queue.get_nowait()
            outcome = await self._send(c)
            self.outcomes.append((c, outcome))
        await self._record()
        return claimed

    async def _sending(self) -> None:
        while True:
            *_, c = await self.queue.get()
            if self.queue.qsize() <= self.queue_target // 2:
                self.wake.set()  # running low: the filler claims more
            await self._send_for_recording(c)

    async def _send_for_recording(self, c: store.ClaimedDelivery) -> None:
        """Send one delivery and hand its outcome to the recorder (a sender's turn, or an
        urgent delivery's own task)."""
        # Not `self.outcomes.append(... await ...)`: that would bind the list the
        # recorder may swap out during the send, and the outcome would be lost.
        outcome = await self._send(c)
        self.outcomes.append((c, outcome))
        self.finished.set()

    async def _recording(self) -> None:
        """Outcomes in batches: whatever finished while the last batch was being written."""
        while True:
            await self.finished.wait()
            self.finished.clear()
            try:
                await self._record()
            except (asyncpg.PostgresError, OSError) as exc:
                # Kept and written once the database answers again. Meanwhile the claims
                # may lapse and another sender send them again (at-least-once).
                log.warning("cannot record send outcomes yet", error=str(exc))
                await asyncio.sleep(1.0)
                self.finished.set()

    async def _record(self) -> None:
        batch, self.outcomes = self.outcomes, []
        if not batch:
            return
        try:
            async with self.pool.acquire() as conn:
                recorded = await store.record_deliveries(
                    conn, self.claim, [(c.id, outcome) for c, outcome in batch]
                )
        except BaseException:
            self.outcomes[:0] = batch
            raise
        for c, _ in batch:
            self.held.discard(c.id)
            if c.id not in recorded:
                log.warning("delivery was taken over by another sender", delivery_id=c.id)

    async def _renewing(self) -> None:
        """While this sender lives its claims do not lapse, however long a send takes."""
        while True:
            await asyncio.sleep(self.settings.sender_lease_s / 3)
            if not self.held:
                continue
            try:
                async with self.pool.acquire() as conn:
                    await store.renew_claims(
                        conn, self.claim, sorted(self.held), self.settings.sender_lease_s
                    )
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("cannot renew send claims", error=str(exc))

    async def _hand_back(self) -> None:
        unsent = []
        while not self.queue.empty():
            *_, c = self.queue.get_nowait()
            unsent.append(c.id)
        await self._record()
        if unsent:
            async with self.pool.acquire() as conn:
                await store.release_claims(conn, self.claim, unsent)

    async def _send(self, c: store.ClaimedDelivery) -> Delivery:
        """Send one delivery; its outcome (sent, retry later or failed), never an error."""
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
        FAILED_ATTEMPTS.labels(c.channel, c.delivery.priority, nxt).inc()
        (log.error if c.delivery.priority == "urgent" else log.warning)(
            "send failed",
            delivery_id=c.id,
            channel=c.channel,
            priority=c.delivery.priority,
            next=nxt,
            attempts=outcome.attempts,
            error=error,
        )
        return outcome
