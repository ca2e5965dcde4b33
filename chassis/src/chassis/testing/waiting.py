"""Waiting for something that happens elsewhere (a worker, a broker, another service)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    what: str,
    check: Callable[[], Awaitable[Any] | Any],
    *,
    timeout: float = 60.0,
    every: float = 0.1,
    failure: type[AssertionError] = AssertionError,
) -> Any:
    """What `check()` gives once it is true (it may be a coroutine function); asked again
    every `every` seconds, and `failure` ("timed out waiting for <what>") after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise failure(f"timed out waiting for {what} ({timeout:g} s)")
        await asyncio.sleep(every)
