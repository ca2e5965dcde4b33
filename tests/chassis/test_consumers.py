"""Consumers: inbox, retries with backoff, dead letters, replay — on the real broker."""

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from faststream import ContextRepo
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY as METRICS

from chassis import consumer, db
from chassis.app import build
from chassis.consumer import EventConsumers, backoff, dead_letter_topic
from chassis.deadletters import list_dead_letters, replay
from chassis.testing.kafka import TopicProbe, publish
from chassis.testing.waiting import until
from contracts import REGISTRY, Envelope
from contracts.events import ReviewPublished
from tests.chassis.ledger import FAILURES, LEDGER, LedgerSettings, consumers, review


async def entries_for(pool: asyncpg.Pool, *therapists: uuid.UUID) -> int:
    return await pool.fetchval(
        "select count(*) from entries where therapist_id = any($1::uuid[])", list(therapists)
    )


async def eventually(check, timeout: float = 20.0) -> None:
    await until("the condition", check, timeout=timeout)


def test_backoff_is_exponential_and_bounded() -> None:
    assert [backoff(n, 0.1, 1.0) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_consumer_group_may_fetch_on_a_wait_of_its_own() -> None:
    settings = LedgerSettings(
        kafka_fetch_max_wait_ms=100, kafka_group_fetch_max_wait_ms={"ledger": 3}
    )
    broker = KafkaBroker(settings.kafka_bootstrap)
    consumers.subscribe(broker, settings)
    [subscriber] = broker.subscribers
    assert subscriber._connection_args["fetch_max_wait_ms"] == 3
    assert settings.fetch_max_wait_ms("another-group") == 100


class _IdleConsumer:
    """A consumer whose polls find nothing; `early`: the poll returns before its timeout."""

    def __init__(self, clock: list[float], *, early: bool, records: list[object]) -> None:
        self.clock, self.early, self.records = clock, early, records
        self.polls: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[str, list[object]]:
        self.polls.append(timeout_ms)
        if self.records:
            return {"topic-0": self.records}
        if not self.early:
            self.clock[0] += timeout_ms / 1000
        return {}


@pytest.mark.parametrize("early", [False, True])
async def test_an_empty_poll_is_not_followed_by_a_pause(monkeypatch, early) -> None:
    """FastStream's own batch poll sleeps its timeout again after an empty poll; ours only
    waits in the poll (unless the poll came back early: then the rest, so nothing spins)."""
    clock, slept = [0.0], []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(consumer.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(consumer.asyncio, "sleep", sleep)
    broker = KafkaBroker("127.0.0.1:9092")
    consumers.subscribe(broker, LedgerSettings())
    [subscriber] = broker.subscribers
    idle = _IdleConsumer(clock, early=early, records=[])
    assert await subscriber.get_msg(idle) == ()
    assert idle.polls == [consumer.IDLE_POLL_MS]
    assert slept == ([consumer.IDLE_POLL_MS / 1000] if early else [0.0])
    busy = _IdleConsumer(clock, early=early, records=["a", "b"])
    assert await subscriber.get_msg(busy) == ("a", "b")


async def test_duplicates_do_nothing_and_transient_failures_are_retried(
    migrated, serve, kafka_bootstrap, topic_prefix
) -> None:
    settings = await migrated(LEDGER, consumer_max_attempts=4)
    pool = await db.create_pool(settings)
    once = review()
    flaky = review()
    FAILURES[flaky.review_id] = 2  # fails twice, then succeeds
    try:
        async with serve(build(LEDGER, settings, "worker")) as http:
            envelope = Envelope.wrap(once)
            await publish(kafka_bootstrap, topic_prefix, envelope, envelope, flaky)
            await eventually(lambda: _both(pool, once.therapist_id, flaky.therapist_id))
            await publish(kafka_bootstrap, topic_prefix, envelope)  # a third delivery
            await asyncio.sleep(1.0)
            assert await entries_for(pool, once.therapist_id) == 1
            assert await entries_for(pool, flaky.therapist_id) == 1
            assert FAILURES[flaky.review_id] == 0
            await asyncio.sleep(1.2)  # the lag gauge is refreshed every second
            metrics = (await http.get("/metrics")).text
        assert 'outcome="duplicate"' in metrics
        assert 'outcome="retried"' in metrics
        lag = [line for line in metrics.splitlines() if line.startswith("samtal_consumer_lag{")]
        assert lag and all(line.endswith(" 0.0") for line in lag)  # caught up
        letters = await list_dead_letters(settings)
        assert not [d for d in letters if d.key == str(flaky.therapist_id).encode()]
    finally:
        await pool.close()


async def _both(pool, a, b) -> bool:
    return await entries_for(pool, a) == 1 and await entries_for(pool, b) == 1


async def test_bad_messages_are_dead_lettered_and_the_consumer_moves_on(
    migrated, serve, kafka_bootstrap, topic_prefix
) -> None:
    settings = await migrated(LEDGER, consumer_max_attempts=3)
    pool = await db.create_pool(settings)
    topic = settings.topic(REGISTRY.topic(ReviewPublished))
    broken = review()
    FAILURES[broken.review_id] = 10  # still failing after 3 tries
    rejected = review(rating=1)  # a permanent error
    after = review()
    try:
        async with (
            serve(build(LEDGER, settings, "worker")),
            TopicProbe(kafka_bootstrap, [settings.topic(dead_letter_topic("ledger"))]) as dlq,
        ):
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b'{"event_type": "ReviewPublished"', key=b"k")
                await producer.send_and_wait(
                    topic,
                    Envelope.wrap(after).to_bytes().replace(b'"rating":4', b'"rating":9'),
                    key=b"k",
                    headers=[("traceparent", b"00-abc-def-01")],
                )
            finally:
                await producer.stop()
            await publish(kafka_bootstrap, topic_prefix, broken, rejected, after)
            await dlq.wait_for(lambda p: len(p.records) >= 4)
            await eventually(lambda: _one(pool, after.therapist_id))

        letters = await list_dead_letters(settings)
        by_error = {d.headers["x-dead-letter-error"].split(":")[0]: d for d in letters}
        assert set(by_error) >= {"invalid", "failed", "rejected"}
        not_json = next(d for d in letters if d.value.startswith(b'{"event_type": "Review'))
        assert "not JSON" in not_json.error and not_json.consumer == "ledger-recorder"
        bad_field = next(d for d in letters if b'"rating":9' in d.value)
        assert "payload.rating" in bad_field.error
        assert bad_field.headers["traceparent"] == "00-abc-def-01"  # original headers kept
        assert bad_field.headers["x-original-topic"] == topic
        exhausted = next(d for d in letters if str(broken.review_id).encode() in d.value)
        assert exhausted.headers["x-dead-letter-attempts"] == "3"
        assert "bad moment" in exhausted.error
        assert await entries_for(pool, broken.therapist_id) == 0

        # The ledger recovers; the operator replays the exhausted one.
        FAILURES[broken.review_id] = 0
        replayed = await replay(settings, [exhausted.ref])
        assert [d.ref for d in replayed] == [exhausted.ref]
        async with serve(build(LEDGER, settings, "worker")):
            await eventually(lambda: _one(pool, broken.therapist_id))
    finally:
        await pool.close()


async def _one(pool, therapist) -> bool:
    return await entries_for(pool, therapist) == 1


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


async def insert_entries(conn: asyncpg.Connection, events: list[Envelope[ReviewPublished]]) -> None:
    await conn.executemany(
        "INSERT INTO entries (event_id, therapist_id, rating, rating_count)"
        " VALUES ($1, $2, $3, $4)",
        [(e.event_id, e.payload.therapist_id, e.payload.rating, 1) for e in events],
    )


def review_applier(
    settings: LedgerSettings, handlers: EventConsumers, group: str
) -> tuple[str, consumer.BatchApplier]:
    """(the reviews' topic, the applier of `handlers` for it)."""
    topic = settings.topic(REGISTRY.topic(ReviewPublished))
    routes = {topic: handlers.handlers}
    return topic, consumer.BatchApplier("ledger", group, routes, settings, ContextRepo())


def records_of(topic: str, *reviews: ReviewPublished) -> list[_Record]:
    return [_Record(topic, 0, n, Envelope.wrap(r).to_bytes()) for n, r in enumerate(reviews)]


async def test_a_batch_handler_takes_a_batch_at_once_and_a_failed_batch_goes_one_by_one(
    migrated,
) -> None:
    settings = await migrated(LEDGER, consumer_lanes=1)
    pool = await db.create_pool(settings)
    calls: list[list[int]] = []
    together = EventConsumers("ledger")

    @together.batch_handler(ReviewPublished, name="ledger-together")
    async def record_all(events: list[Envelope[ReviewPublished]], conn: asyncpg.Connection) -> None:
        calls.append([e.payload.rating for e in events])
        if len(events) > 1 and any(e.payload.rating == 2 for e in events):
            raise RuntimeError("a two-star review spoils a batch, not a record of its own")
        await insert_entries(conn, events)

    topic, applier = review_applier(settings, together, "ledger-together")

    try:
        first = [review(rating=5), review(rating=4), review(rating=3)]
        batch = records_of(topic, *first)
        await applier.apply(batch, consumer.Batch(pool, None, ContextRepo()))
        assert calls == [[5, 4, 3]]  # once, in the order they came
        await applier.apply(batch, consumer.Batch(pool, None, ContextRepo()))
        assert calls == [[5, 4, 3]]  # again: nothing fresh, no call
        calls.clear()
        # Redelivered beside fresh ones, and one event twice in a batch: the fresh, once.
        again, twice = review(rating=1), review(rating=3)
        [fresh, repeated] = records_of(topic, again, twice)
        mixed = [batch[0], fresh, batch[1], repeated, repeated]
        await applier.apply(mixed, consumer.Batch(pool, None, ContextRepo()))
        assert calls == [[1, 3]]
        calls.clear()
        spoilt = [review(rating=5), review(rating=2), review(rating=4)]
        await applier.apply(records_of(topic, *spoilt), consumer.Batch(pool, None, ContextRepo()))
        assert calls == [[5, 2, 4], [5], [2], [4]]  # failed together: each alone
        therapists = [r.therapist_id for r in first + spoilt]
        assert await entries_for(pool, *therapists) == 6
        assert await entries_for(pool, again.therapist_id, twice.therapist_id) == 2
    finally:
        await pool.close()


async def test_a_handler_waits_for_what_it_needs_holding_no_connection(migrated_offline) -> None:
    """`ready` is awaited before the lane takes a connection: with a pool of one, what the
    handler waits for can still take that one (as the matcher's index keeper rebuilds)."""
    settings = await migrated_offline(LEDGER, consumer_lanes=1, db_pool_min=0, db_pool_max=1)
    pool = await db.create_pool(settings)
    waiting, built = asyncio.Event(), asyncio.Event()
    seen_ready: list[bool] = []

    async def index_built(given: LedgerSettings) -> None:
        assert given is settings
        waiting.set()
        await built.wait()

    gated = EventConsumers("ledger")

    @gated.batch_handler(ReviewPublished, name="ledger-gated", ready=index_built)
    async def record_all(events: list[Envelope[ReviewPublished]], conn: asyncpg.Connection) -> None:
        seen_ready.append(built.is_set())
        await insert_entries(conn, events)

    topic, applier = review_applier(settings, gated, "ledger-gated")
    reviews = [review(rating=5), review(rating=4)]
    records = records_of(topic, *reviews)
    applying = asyncio.create_task(
        applier.apply(records, consumer.Batch(pool, None, ContextRepo()))
    )
    try:
        await asyncio.wait_for(waiting.wait(), 10)
        # The one connection is free while the lane waits: the "keeper" takes and uses it.
        async with pool.acquire(timeout=5) as conn:
            await conn.execute("SELECT 1")
        assert not applying.done()
        built.set()
        await asyncio.wait_for(applying, 10)
        assert seen_ready == [True]
        assert await entries_for(pool, *(r.therapist_id for r in reviews)) == 2
    finally:
        applying.cancel()  # (failed: it may hold the connection the pool waits for)
        await pool.close()


async def test_events_wait_out_a_database_away_and_none_is_dead_lettered(
    migrated, serve, kafka_bootstrap, topic_prefix, database_dsn
) -> None:
    """The database away for longer than a record's attempts last (a restart, a failover):
    the events arriving meanwhile wait for it in their lane, with backoff (they went back
    to FastStream, which fetched them again at once: ~60 tracebacks a second, counted by
    no metric), each applied once when it is back; none is dead-lettered (it is no fault
    of theirs)."""
    settings = await migrated(
        LEDGER, consumer_max_attempts=2, consumer_backoff_s=0.05, consumer_backoff_max_s=0.2
    )
    pool = await db.create_pool(settings)
    owner = await asyncpg.connect(database_dsn)
    before = [review(), review()]
    during = [review() for _ in range(4)]
    try:
        async with serve(build(LEDGER, settings, "worker")):
            await publish(kafka_bootstrap, topic_prefix, *before)
            await eventually(lambda: _all_in(pool, before))
            await owner.execute(f'ALTER ROLE "{settings.role}" CONNECTION LIMIT 0')
            await owner.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
                settings.role,
            )
            waited = database_waits()
            await publish(kafka_bootstrap, topic_prefix, *during)
            await asyncio.sleep(3.0)  # many times the two attempts' backoff
            assert database_waits() > waited
            await owner.execute(f'ALTER ROLE "{settings.role}" CONNECTION LIMIT -1')
            await eventually(lambda: _all_in(pool, during), timeout=30)
            await asyncio.sleep(0.5)
        for event in [*before, *during]:
            assert await entries_for(pool, event.therapist_id) == 1
        letters = await list_dead_letters(settings)
        keys = {str(e.therapist_id).encode() for e in during}
        assert not [d for d in letters if d.key in keys]
    finally:
        await owner.execute(f'ALTER ROLE "{settings.role}" CONNECTION LIMIT -1')
        await owner.close()
        await pool.close()


def database_waits() -> float:
    labels = {"service": "ledger", "group": "ledger"}
    return METRICS.get_sample_value("samtal_consumer_database_waits_total", labels) or 0.0


async def _all_in(pool: asyncpg.Pool, events: list[ReviewPublished]) -> bool:
    return await entries_for(pool, *(e.therapist_id for e in events)) == len(events)
