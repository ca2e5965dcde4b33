"""The matcher waits for the candidate index outside its transaction (`index_ready`, the
consumer's `ready`) and, inside it, never waits (`built_index`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from structlog.testing import capture_logs

from matching import service
from matching.service.index import _keeping
from matching.settings import Settings


def settings_of_a_worker(**overrides: object) -> Settings:
    # A database of its own: the index kept per database and schema is this test's alone.
    url = f"postgresql://samtal@127.0.0.1:9/unit_{uuid.uuid4().hex[:8]}"
    return Settings(database_url=url, log_json=False, **overrides)


def test_a_decision_does_not_wait_for_an_index_being_built() -> None:
    settings = settings_of_a_worker()
    with pytest.raises(service.IndexNotReady):
        service.built_index(settings)
    keeping = _keeping(settings)
    keeping.ready.set()
    assert service.built_index(settings).index is keeping.index


async def test_the_matcher_waits_for_the_index_as_long_as_it_takes() -> None:
    settings = settings_of_a_worker(startup_timeout_s=0.05)
    waiting = asyncio.create_task(service.index_ready(settings))
    with capture_logs() as logs:
        await asyncio.sleep(0.2)  # several timeouts: still waiting, not failed
        assert not waiting.done()
    assert any(entry["event"] == "the matcher waits for the candidate index" for entry in logs)
    _keeping(settings).ready.set()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(service.index_ready(settings), 1)  # built: returns at once
