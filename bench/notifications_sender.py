"""Notifications: how fast events become messages, how fast the sender delivers them
against what the relay allows, and how long a crisis waits behind a backlog.

    uv run --frozen --all-packages python bench/notifications_sender.py [--messages 2000]

Real Postgres (as the tests find it) and a real SMTP server (aiosmtpd in its own
process, taking --smtp-latency-ms per mail like a relay some way off). No broker: the
handlers' work is the store call they make, measured directly. Medians of --runs runs.

1. planning: IntakeSubmitted events -> messages, 8 writers, one transaction per event
   (what the consumer does per event, minus Kafka);
2. sending: a backlog of e-mail messages delivered by one sender (render, inbox,
   SMTP, record) with --concurrency sends at a time (and with one, for scale). The
   sink's limit is concurrency / latency: no sender can do better than that;
3. crisis: a backlog of normal messages is being sent when an escalation is written:
   time until the crisis e-mails are sent, against the time to drain the backlog.

Last line: `bench notifications: send_over_limit=… crisis_over_drain=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx

from chassis import db
from chassis.infra import free_port, port_open, provide_postgres
from chassis.testing.events import a_submitted_intake
from contracts import Envelope
from contracts.events import IntakeEscalated, IntakeSubmitted
from notifications import store
from notifications.app import DEFINITION, Settings
from notifications.channels import EmailChannel, SmsChannel
from notifications.domain.contacts import ContactSettings
from notifications.domain.plan import plan
from notifications.sender import Sender


def receipt(client: uuid.UUID) -> IntakeSubmitted:
    return a_submitted_intake(client, preferred_mode="video")


async def handle(pool: asyncpg.Pool, envelope: Envelope[Any], settings: Settings) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await store.save_plan(conn, envelope, plan(envelope, settings.on_call_roster))


async def people(pool: asyncpg.Pool, n: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    async with pool.acquire() as conn:
        for i, person in enumerate(ids):
            await store.save_contacts(
                conn, ContactSettings(person_id=person, email=f"p{i}-{person.hex[:6]}@example.se")
            )
    return ids


async def bench_planning(pool: asyncpg.Pool, settings: Settings, n: int) -> float:
    clients = [uuid.uuid4() for _ in range(n)]
    queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    for c in clients:
        queue.put_nowait(c)

    async def writer() -> None:
        while not queue.empty():
            await handle(pool, Envelope.wrap(receipt(queue.get_nowait())), settings)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(8)))
    elapsed = time.perf_counter() - started
    # Not to be sent: this part measures planning only.
    await pool.execute(
        "UPDATE messages SET state = 'dropped' WHERE state = 'scheduled' AND recipient_id ="
        " ANY($1::uuid[])",
        clients,
    )
    return n / elapsed


async def pending(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> int:
    return await pool.fetchval(
        "SELECT (SELECT count(*) FROM messages WHERE state = 'scheduled'"
        "        AND recipient_id = ANY($1::uuid[]))"
        " + (SELECT count(*) FROM deliveries d JOIN messages m ON m.id = d.message_id"
        "    WHERE d.state = 'pending' AND m.recipient_id = ANY($1::uuid[]))",
        ids,
    )


async def run_sender(settings: Settings, pool: asyncpg.Pool) -> asyncio.Task[None]:
    client = httpx.AsyncClient()
    sender = Sender(settings, pool, EmailChannel(settings), SmsChannel(settings, client))
    return asyncio.create_task(sender.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def bench_sending(pool: asyncpg.Pool, settings: Settings, n: int) -> float:
    clients = await people(pool, n)
    for c in clients:
        await handle(pool, Envelope.wrap(receipt(c)), settings)
    started = time.perf_counter()
    task = await run_sender(settings, pool)
    while await pending(pool, clients):
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    await stop(task)
    return n / elapsed


async def bench_crisis(pool: asyncpg.Pool, settings: Settings, n: int) -> tuple[float, float]:
    """(crisis written -> its last e-mail sent, sender start -> backlog drained), in s."""
    clients = await people(pool, n)
    in_crisis = (await people(pool, 1))[0]
    for c in clients:
        await handle(pool, Envelope.wrap(receipt(c)), settings)
    started = await pool.fetchval("SELECT clock_timestamp()")
    task = await run_sender(settings, pool)
    while await pending(pool, clients) > n * 0.8:  # a fifth of the backlog is out
        await asyncio.sleep(0.01)
    escalated = Envelope.wrap(
        IntakeEscalated(intake_id=uuid.uuid4(), client_id=in_crisis, severity_band="severe")
    )
    await handle(pool, escalated, settings)
    crisis = [in_crisis, *settings.on_call_clinicians]
    while await pending(pool, [*clients, *crisis]):
        await asyncio.sleep(0.05)
    await stop(task)
    row = await pool.fetchrow(
        "SELECT max(d.sent_at) FILTER (WHERE m.event_id = $1) AS crisis_sent,"
        " min(m.created_at) FILTER (WHERE m.event_id = $1) AS crisis_written,"
        " max(d.sent_at) AS drained FROM deliveries d JOIN messages m ON m.id = d.message_id"
        " WHERE m.recipient_id = ANY($2::uuid[]) OR m.event_id = $1",
        escalated.event_id,
        clients,
    )
    latency = (row["crisis_sent"] - row["crisis_written"]).total_seconds()
    return latency, (row["drained"] - started).total_seconds()


async def main(n: int, runs: int, smtp_port: int, latency_ms: float, concurrency: int) -> None:
    server = provide_postgres()
    name = f"samtal_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        clinician = uuid.uuid4()
        settings = Settings(
            database_url=server.dsn_for(name),
            smtp_port=smtp_port,
            smtp_starttls=False,
            on_call_clinicians=[clinician],
            log_level="WARNING",
            db_pool_max=12,
            sender_concurrency=concurrency,
        )
        await db.bootstrap_role(settings.database_url, settings.role, "samtal-local")
        await asyncio.to_thread(db.migrate, settings, DEFINITION.migrations)
        pool = await db.create_pool(settings)
        async with pool.acquire() as conn:
            await store.save_contacts(
                conn, ContactSettings(person_id=clinician, email="oncall@example.se")
            )

        planning = [await bench_planning(pool, settings, n) for _ in range(runs)]
        one = settings.model_copy(update={"sender_concurrency": 1})
        sending_1 = [await bench_sending(pool, one, max(n // 10, 50)) for _ in range(runs)]
        sending = [await bench_sending(pool, settings, n) for _ in range(runs)]
        crisis = [await bench_crisis(pool, settings, n) for _ in range(runs)]
        await pool.close()

        med = statistics.median
        latency, drain = med(c[0] for c in crisis), med(c[1] for c in crisis)
        limit = concurrency / (latency_ms / 1000)
        print(
            f"notifications, {n} messages, median of {runs} runs ({server.path} Postgres,"
            f" SMTP sink answering in {latency_ms:g} ms)"
        )
        print(f"  planning (8 writers, tx per event)   {med(planning):8.0f} events/s")
        print(f"  sending, 1 send at a time            {med(sending_1):8.0f} e-mails/s"
              f"  (limit {1 / (latency_ms / 1000):.0f}/s)")  # fmt: skip
        print(f"  sending, {concurrency} sends at a time  {med(sending):13.0f} e-mails/s"
              f"  (limit {limit:.0f}/s: {med(sending) / limit:.2f}x)")  # fmt: skip
        print(f"  crisis sent after                    {latency * 1000:8.0f} ms")
        print(f"  backlog drained after                {drain * 1000:8.0f} ms"
              f"  (crisis at {latency / drain:.1%} of the drain)")  # fmt: skip
        print(
            f"bench notifications: send_over_limit={med(sending) / limit:.2f}"
            f" crisis_over_drain={latency / drain:.4f}"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        server.stop()


class SlowSink:
    """Accepts and drops every message after `latency` s, like a relay some way off."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.latency)
        return "250 OK"


def serve_sink(port: int, latency: float) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(SlowSink(latency), hostname="127.0.0.1", port=port)
    controller.start()
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def sink_smtp_server(latency: float) -> tuple[subprocess.Popen[bytes], int]:
    """The SMTP sink in its own process (it must not share this one's CPU time)."""
    port = free_port()
    cmd = [sys.executable, __file__, "--serve-sink", str(port), "--smtp-latency-ms"]
    server = subprocess.Popen([*cmd, str(latency * 1000)])
    for _ in range(600):  # a loaded machine may take a while to start Python
        if port_open("127.0.0.1", port):
            break
        time.sleep(0.1)
    return server, port


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20, help="sends at a time")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--smtp-latency-ms", type=float, default=20, help="how long the SMTP server takes per mail"
    )
    parser.add_argument("--serve-sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        serve_sink(args.serve_sink, args.smtp_latency_ms / 1000)
        sys.exit(0)
    smtp, port = sink_smtp_server(args.smtp_latency_ms / 1000)
    try:
        asyncio.run(main(args.messages, args.runs, port, args.smtp_latency_ms, args.concurrency))
    finally:
        smtp.terminate()
        smtp.wait(5)
