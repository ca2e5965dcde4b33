"""Worker tasks that do a round of work every so often: a watch refreshing a gauge, a
retention round, booking's summary publisher.

`periodic` writes the loop once. A round that fails (the database away, a statement timing
out) is logged and the next one tries again; the task itself never ends but by
cancelling. Each round is counted by outcome (`samtal_worker_rounds_total`), because a gauge
that a failing round no longer refreshes keeps its last value: the waiting-for-triage gauge
would say nobody waits while its query fails, and the page meant to fire would not. An
alert watches the failures (deploy/prometheus/alerts.yaml: CrisisWatchFailing,
WorkerRoundsFailing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter

from chassis.app import BackgroundTask, Runtime
from chassis.settings import ServiceSettings

log = structlog.get_logger("chassis.periodic")

ROUNDS = Counter(
    "samtal_worker_rounds_total",
    "Rounds of a worker's periodic task (a watch, retention, a publisher), by outcome",
    ["service", "task", "outcome"],
)

# One round of a task's work.
Round = Callable[[Runtime], Awaitable[object]]


def periodic(
    task: str, every: Callable[[ServiceSettings], float], round_of_work: Round
) -> BackgroundTask:
    """A worker task (`ServiceDefinition.worker_tasks`) named `task` that runs
    `round_of_work` at once and then every `every(settings)` seconds after a round ends."""

    async def run(runtime: Runtime) -> None:
        service, seconds = runtime.settings.service, every(runtime.settings)
        while True:
            try:
                await round_of_work(runtime)
            except Exception as exc:  # the next round tries again
                ROUNDS.labels(service, task, "failed").inc()
                log.warning(
                    "worker round failed; the next one tries again", task=task, error=repr(exc)
                )
            else:
                ROUNDS.labels(service, task, "succeeded").inc()
            await asyncio.sleep(seconds)

    run.__name__ = run.__qualname__ = task.replace("-", "_")
    return run
