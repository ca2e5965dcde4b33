"""chassis.periodic: a worker task doing a round every so often, counted by outcome."""

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from chassis.app import Runtime
from chassis.periodic import periodic
from chassis.settings import ServiceSettings


def rounds(service: str, outcome: str) -> float:
    labels = {"service": service, "task": "test-rounds", "outcome": outcome}
    return REGISTRY.get_sample_value("samtal_worker_rounds_total", labels) or 0.0


async def test_a_periodic_task_goes_on_after_failed_rounds_and_counts_each_outcome() -> None:
    settings = ServiceSettings(service=f"ledger-{uuid.uuid4().hex[:8]}")
    failures = [ConnectionError("the database is away"), None, TimeoutError("no answer"), None]
    seen: list[object] = []
    fourth = asyncio.Event()

    async def round_of_work(runtime: Runtime) -> None:
        seen.append(runtime.settings)
        if len(seen) == len(failures):
            fourth.set()
        failure = failures[len(seen) - 1] if len(seen) <= len(failures) else None
        if failure is not None:
            raise failure

    asked: list[ServiceSettings] = []

    def every(given: ServiceSettings) -> float:
        asked.append(given)
        return 0.01

    task = periodic("test-rounds", every, round_of_work)
    assert task.__name__ == "test_rounds"
    running = asyncio.create_task(task(Runtime(settings=settings, broker=None)))  # type: ignore[arg-type]
    await asyncio.wait_for(fourth.wait(), 5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert asked == [settings]  # read once, from the runtime's settings
    assert all(s is settings for s in seen)
    assert rounds(settings.service, "failed") == 2
    assert rounds(settings.service, "succeeded") == len(seen) - 2


async def test_a_round_being_cancelled_ends_the_task() -> None:
    settings = ServiceSettings(service=f"ledger-{uuid.uuid4().hex[:8]}")
    started = asyncio.Event()

    async def round_of_work(_runtime: Runtime) -> None:
        started.set()
        await asyncio.sleep(60)

    task = periodic("test-rounds", lambda _: 0.01, round_of_work)
    running = asyncio.create_task(task(Runtime(settings=settings, broker=None)))  # type: ignore[arg-type]
    await asyncio.wait_for(started.wait(), 5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)
    assert rounds(settings.service, "failed") == 0
