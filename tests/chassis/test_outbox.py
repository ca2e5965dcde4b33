"""The transactional outbox and its relay, against the real Postgres and broker."""

import asyncio
import uuid
from collections import defaultdict

import asyncpg
import pytest

from chassis import db, outbox
from chassis.app import build
from chassis.infra import start_embedded_kafka
from chassis.outbox import OutboxRelay
from chassis.testing.kafka import TopicProbe
from chassis.testing.network import SilentHop
from chassis.testing.waiting import until
from contracts import REGISTRY
from contracts.events import ReviewPublished
from tests.chassis.ledger import LEDGER, review

TOPIC = REGISTRY.topic(ReviewPublished)


async def write(pool: asyncpg.Pool, events: list[ReviewPublished]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await outbox.add(conn, event)


def mine(probe: TopicProbe, events: list[ReviewPublished]) -> list:
    """This test's envelopes (the session's outbox may still hold an earlier test's rows)."""
    ids = {e.review_id for e in events}
    return [e for e in probe.envelopes("ReviewPublished") if e.payload.review_id in ids]


def per_key_sequences(probe: TopicProbe, events: list[ReviewPublished]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = defaultdict(list)
    for envelope in mine(probe, events):
        seen[envelope.key].append(envelope.payload.rating_count)
    return seen


def keyed_events(keys: int, per_key: int) -> list[ReviewPublished]:
    therapists = [uuid.uuid4() for _ in range(keys)]
    return [
        review(therapist_id=t, rating_count=n) for n in range(1, per_key + 1) for t in therapists
    ]


async def unsent(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("select count(*) from outbox where sent_at is null")


async def test_events_commit_with_the_change_or_not_at_all(migrated) -> None:
    settings = await migrated(LEDGER)
    pool = await db.create_pool(settings)
    try:
        before = await pool.fetchval("select count(*) from outbox")
        try:
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, review())
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass
        assert await pool.fetchval("select count(*) from outbox") == before
        await write(pool, [review()])
        assert await pool.fetchval("select count(*) from outbox") == before + 1
    finally:
        await pool.close()


async def test_write_puts_the_change_and_its_events_in_one_statement(migrated) -> None:
    settings = await migrated(LEDGER)
    pool = await db.create_pool(settings)
    try:
        event = review()
        insert = "INSERT INTO submissions VALUES ($1, $2, $3) RETURNING review_id"
        args = (event.review_id, event.therapist_id, event.rating)
        async with pool.acquire() as conn:
            rows = await outbox.write(conn, insert, *args, events=[event])
            assert [r["review_id"] for r in rows] == [event.review_id]
            written = await conn.fetchrow(
                "SELECT event_type, topic, key, headers FROM outbox"
                " WHERE convert_from(value, 'UTF8') LIKE '%' || $1 || '%'",
                str(event.review_id),
            )
            assert written["event_type"] == "ReviewPublished"
            assert written["topic"] == TOPIC and written["key"] == str(event.therapist_id)
            assert written["headers"]["event_type"] == "ReviewPublished"
            # The change fails (duplicate key): its event is not written either.
            before = await conn.fetchval("SELECT count(*) FROM outbox")
            with pytest.raises(asyncpg.UniqueViolationError):
                await outbox.write(conn, insert, *args, events=[review()])
            # Nothing changed: with only_if_changed, no event.
            unchanged = await outbox.write(
                conn,
                "UPDATE submissions SET rating = 5 WHERE review_id = $1 RETURNING review_id",
                uuid.uuid4(),
                events=[review()],
                only_if_changed=True,
            )
            assert unchanged == []
            assert await conn.fetchval("SELECT count(*) FROM outbox") == before
            # Without RETURNING, the change still happens with its events.
            assert (
                await outbox.write(
                    conn,
                    "UPDATE submissions SET rating = $2 WHERE review_id = $1",
                    event.review_id,
                    2,
                    events=[review(), review()],
                )
                == []
            )
            assert await conn.fetchval("SELECT count(*) FROM outbox") == before + 2
            with pytest.raises(ValueError, match="RETURNING"):
                await outbox.write(conn, "DELETE FROM submissions", events=[], only_if_changed=True)
    finally:
        await pool.close()


async def test_the_relay_publishes_in_order_per_key_and_marks_sent(
    migrated, kafka_bootstrap
) -> None:
    settings = await migrated(LEDGER)
    pool = await db.create_pool(settings)
    relay = OutboxRelay(settings, pool)
    events = keyed_events(keys=4, per_key=25)
    async with TopicProbe(kafka_bootstrap, [settings.topic(TOPIC)]) as probe:
        await write(pool, events)
        relay.start()
        await probe.wait_for(lambda p: len(mine(p, events)) >= len(events))
        await relay.stop()
    sequences = per_key_sequences(probe, events)
    assert len(sequences) == 4
    assert all(seq == list(range(1, 26)) for seq in sequences.values())
    ids = [e.payload.review_id for e in mine(probe, events)]
    assert len(ids) == len(set(ids))
    assert await unsent(pool) == 0
    await pool.close()


async def test_a_lingering_relay_publishes_a_stream_in_order_and_records_the_ack(
    migrated, kafka_bootstrap
) -> None:
    """Rows that keep coming while the relay lingers between claims all go, in order per
    key, and each is marked sent at its acknowledgement: after it was written."""
    settings = await migrated(LEDGER, outbox_linger_s=0.02)
    pool = await db.create_pool(settings)
    relay = OutboxRelay(settings, pool)
    events = keyed_events(keys=3, per_key=20)
    async with TopicProbe(kafka_bootstrap, [settings.topic(TOPIC)]) as probe:
        relay.start()
        for event in events:  # one commit each, while the relay runs
            await write(pool, [event])
        await probe.wait_for(lambda p: len(mine(p, events)) >= len(events))
        await relay.stop()
    sequences = per_key_sequences(probe, events)
    assert all(seq == list(range(1, 21)) for seq in sequences.values())
    assert len(sequences) == 3
    assert await unsent(pool) == 0
    assert not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at < created_at")
    await pool.close()


async def test_a_row_committed_just_after_the_relay_fell_asleep_goes_without_a_wake_up(
    migrated, kafka_bootstrap
) -> None:
    """A writer whose INSERT read the `sleeping` flag while the relay was busy, and which
    commits only after the relay's next claim found nothing and set the flag, sends no
    NOTIFY: the relay's second look after falling asleep publishes its row, long before
    the poll (an hour here)."""
    settings = await migrated(LEDGER, outbox_poll_s=3600)
    pool = await db.create_pool(settings)
    relay = OutboxRelay(settings, pool)
    relay.SECOND_LOOK_S = 1.0  # room for the test to commit between the claim and the look
    first, late = review(), review()
    writer = await pool.acquire()
    late_written = writer.transaction()
    started = asyncio.Event()

    async def while_busy(_ids: object) -> None:
        # The relay is busy with `first`: the late writer's INSERT finds the flag unset.
        if not started.is_set():
            started.set()
            await late_written.start()
            await outbox.add(writer, late)

    relay.after_publish = while_busy
    try:
        async with TopicProbe(kafka_bootstrap, [settings.topic(TOPIC)]) as probe:
            await write(pool, [first])
            relay.start()
            await probe.wait_for(lambda p: len(mine(p, [first])) == 1)
            # The relay's next claim does not see the late row and puts the relay to sleep.
            while not await pool.fetchval("SELECT sleeping FROM outbox_relay"):
                await asyncio.sleep(0.01)
            await late_written.commit()  # no NOTIFY: the flag was read unset
            await probe.wait_for(lambda p: len(mine(p, [late])) == 1, timeout=30)
    finally:
        await relay.stop()
        await pool.release(writer)
        await pool.close()


async def test_sent_rows_are_cleaned_after_the_retention(migrated) -> None:
    settings = await migrated(LEDGER, outbox_retention_hours=1)
    pool = await db.create_pool(settings)
    await write(pool, [review(), review()])
    await pool.execute(
        "update outbox set sent_at = now() - interval '2 hours' where sent_at is null"
    )
    await write(pool, [review()])
    await pool.execute("update outbox set sent_at = now() where sent_at is null")
    relay = OutboxRelay(settings, pool)
    assert await relay.clean_up() >= 2
    assert (
        await pool.fetchval("select count(*) from outbox where sent_at < now() - interval '1 hour'")
        == 0
    )
    assert await pool.fetchval("select count(*) from outbox") >= 1
    await pool.close()


async def test_a_crash_between_publish_and_mark_republishes_and_the_inbox_applies_once(
    migrated, kafka_bootstrap, serve
) -> None:
    # A relay that died mid-batch: its successor publishes the rows again after the grace.
    settings = await migrated(LEDGER, outbox_takeover_grace_s=2)
    pool = await db.create_pool(settings)
    events = [review() for _ in range(5)]

    crashing = OutboxRelay(settings, pool)

    async def crash(_ids) -> None:
        raise asyncio.CancelledError("the relay process died")

    crashing.after_publish = crash
    async with TopicProbe(kafka_bootstrap, [settings.topic(TOPIC)]) as probe:
        await write(pool, events)
        task = crashing.start()
        await probe.wait_for(lambda p: len(mine(p, events)) >= 5)
        try:
            await asyncio.wait_for(task, 5)
        except (asyncio.CancelledError, TimeoutError):
            pass
        assert await unsent(pool) >= 5  # published, never marked

        async with serve(build(LEDGER, settings, "worker")):  # a fresh relay and the consumer
            await probe.wait_for(lambda p: len(mine(p, events)) >= 10)
            for _ in range(200):
                if (
                    await pool.fetchval(
                        "select count(*) from entries where therapist_id = any($1::uuid[])",
                        [e.therapist_id for e in events],
                    )
                    == 5
                    and await unsent(pool) == 0
                ):
                    break
                await asyncio.sleep(0.1)
            await probe.quiet(0.5)
        applied = await pool.fetchval(
            "select count(*) from entries where therapist_id = any($1::uuid[])",
            [e.therapist_id for e in events],
        )
    assert len(mine(probe, events)) >= 10  # every event went out twice
    assert applied == 5  # and took effect once
    assert await unsent(pool) == 0
    await pool.close()


async def test_nothing_is_lost_while_the_broker_is_down(migrated) -> None:
    broker = start_embedded_kafka()
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    settings = await migrated(LEDGER, kafka_bootstrap=broker.bootstrap)
    pool = await db.create_pool(settings)
    relay = OutboxRelay(settings, pool)
    relay.start()
    events = keyed_events(keys=3, per_key=10)
    try:
        broker.stop()  # the broker goes away; the service keeps writing
        await write(pool, events[:15])
        await asyncio.sleep(1.5)
        await write(pool, events[15:])
        assert await unsent(pool) == len(events)
        broker = start_embedded_kafka(port=port)  # back, on the same address
        async with TopicProbe(broker.bootstrap, [settings.topic(TOPIC)]) as probe:
            await probe.wait_for(lambda p: len(mine(p, events)) >= len(events), timeout=40)
        sequences = per_key_sequences(probe, events)
        assert sorted(len(s) for s in sequences.values()) == [10, 10, 10]
        assert all(s == list(range(1, 11)) for s in sequences.values())
        for _ in range(100):  # marked sent just after the broker acknowledged
            if await unsent(pool) == 0:
                break
            await asyncio.sleep(0.1)
        assert await unsent(pool) == 0
    finally:
        await relay.stop()
        await pool.close()
        broker.stop()


async def test_two_relays_keep_order_and_publish_once(migrated, kafka_bootstrap) -> None:
    settings = await migrated(LEDGER)
    pool = await db.create_pool(settings)
    relays = [OutboxRelay(settings, pool), OutboxRelay(settings, pool)]
    for relay in relays:
        relay.start()
    events = keyed_events(keys=5, per_key=40)
    try:
        async with TopicProbe(kafka_bootstrap, [settings.topic(TOPIC)]) as probe:
            # One writer per key, all at once; each key's events written in order.
            by_key: dict = defaultdict(list)
            for event in events:
                by_key[event.therapist_id].append(event)
            for n in range(40):
                await asyncio.gather(*(write(pool, [by_key[k][n]]) for k in by_key))
            await probe.wait_for(lambda p: len(mine(p, events)) >= len(events))
            await probe.quiet(1.0)
            assert sum(r.is_leader for r in relays) == 1
        ids = [e.event_id for e in mine(probe, events)]
        assert len(ids) == len(set(ids)) == len(events)
        assert all(s == list(range(1, 41)) for s in per_key_sequences(probe, events).values())
    finally:
        for relay in relays:
            await relay.stop()
        await pool.close()


async def relay_pool(settings, name: str) -> asyncpg.Pool:
    """A pool of the relay's own, named so a test can cut exactly its connections."""
    return await db.create_pool(
        settings.model_copy(update={"service": name, "db_role": settings.role})
    )


async def cut_connections(pool: asyncpg.Pool, application_name: str) -> int:
    return await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = $1 AND pid <> pg_backend_pid()",
        application_name,
    )


async def leader_of(relays: list[OutboxRelay]) -> int:
    for _ in range(200):
        leaders = [i for i, r in enumerate(relays) if r.is_leader]
        if leaders:
            return leaders[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no relay took the lead")


# The cut lock connections are dead: asyncpg cannot UNLISTEN on them (remove_listener does
# nothing on a closed connection), and warns when the pool takes them back with the listener.
@pytest.mark.filterwarnings(
    "ignore:.*is being released to the pool but has 1 active notification listener"
    ":asyncpg.exceptions.InterfaceWarning"
)
async def test_a_fenced_leader_stops_at_once_and_nothing_goes_twice(
    migrated, kafka_bootstrap
) -> None:
    """The leader's connections are cut mid-burst with two relays running: the standby
    takes over, and every record is on the topic exactly once, in order per key."""
    settings = await migrated(LEDGER, outbox_batch_size=20)
    writers = await db.create_pool(settings)
    names = ["ledger-relay-a", "ledger-relay-b"]
    pools = [await relay_pool(settings, name) for name in names]
    relays = [OutboxRelay(settings, pool) for pool in pools]
    per_key = 60
    events = keyed_events(keys=6, per_key=per_key)
    by_key: dict = defaultdict(list)
    for event in events:
        by_key[event.therapist_id].append(event)
    cuts = 0
    try:
        async with TopicProbe(kafka_bootstrap, [settings.topic(TOPIC)]) as probe:
            for relay in relays:
                relay.start()
            for n in range(per_key):
                # One writer per key, all at once; each key's events written in order.
                await asyncio.gather(*(write(writers, [by_key[k][n]]) for k in by_key))
                if n in (15, 35):  # mid-burst: cut the leader's connections
                    cuts += await cut_connections(writers, names[await leader_of(relays)])
            await probe.wait_for(lambda p: len(mine(p, events)) >= len(events), timeout=40)
            await probe.quiet(1.0)
        assert cuts >= 2
        ids = [e.event_id for e in mine(probe, events)]
        assert len(ids) == len(set(ids)) == len(events)  # once each: nothing lost, nothing twice
        sequences = per_key_sequences(probe, events)
        assert all(s == list(range(1, per_key + 1)) for s in sequences.values())
        assert sum(r.is_leader for r in relays) == 1
    finally:
        for relay in relays:
            await relay.stop()
        for pool in [*pools, writers]:
            await pool.close()


async def test_a_leader_whose_lock_connection_goes_silent_steps_down_and_leads_again(
    migrated, kafka_bootstrap
) -> None:
    """The only relay's lock connection stops answering (a partition, a failover): within
    `db_held_timeout_s` it stops leading and lets that connection go, instead of waiting on
    it for good; once Postgres has ended the silent session (its keepalives do, within about
    a minute; here the test does it), the relay leads again and what was written meanwhile
    is published, each record once."""
    settings = await migrated(LEDGER, db_held_timeout_s=1.0)
    writers = await db.create_pool(settings)
    name = "ledger-relay-silenced"
    async with SilentHop.to(settings.database_url) as hop:
        through = settings.model_copy(update={"database_url": hop.dsn(settings.database_url)})
        pool = await relay_pool(through, name)
        relay = OutboxRelay(settings, pool)
        before, meanwhile = keyed_events(keys=2, per_key=3), keyed_events(keys=2, per_key=3)
        try:
            async with TopicProbe(kafka_bootstrap, [settings.topic(TOPIC)]) as probe:
                relay.start()
                await write(writers, before)
                await probe.wait_for(lambda p: len(mine(p, before)) == len(before))
                lock = await writers.fetchrow(
                    "SELECT a.pid, a.client_port FROM pg_locks l JOIN pg_stat_activity a"
                    " USING (pid) WHERE l.locktype = 'advisory' AND a.application_name = $1",
                    name,
                )
                assert lock is not None and relay.is_leader
                hop.silence(lock["client_port"])
                await write(writers, meanwhile)
                await until("the relay stepping down", lambda: not relay.is_leader, timeout=8)
                # What Postgres's keepalives do to the silent session: its lock goes with it.
                await writers.execute("SELECT pg_terminate_backend($1)", lock["pid"])
                await probe.wait_for(lambda p: len(mine(p, meanwhile)) == len(meanwhile))
                await probe.quiet(0.5)
                assert relay.is_leader
            ids = [e.event_id for e in mine(probe, before + meanwhile)]
            assert len(ids) == len(set(ids)) == len(before + meanwhile)
        finally:
            await asyncio.wait_for(relay.stop(), 20)
            pool.terminate()
            await writers.close()
