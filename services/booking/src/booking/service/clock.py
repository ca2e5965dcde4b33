"""Booking's demo clock: "now" moved forward by `make demo` (only with `demo_clock` on)."""

from __future__ import annotations

import asyncpg

from booking import store


async def clock_offset_s(pool: asyncpg.Pool) -> float:
    """How far the demo clock is ahead of real time, in seconds."""
    async with pool.acquire() as conn:
        return await store.clock_offset_s(conn)


async def advance_clock(pool: asyncpg.Pool, seconds: float) -> float:
    """Moves the demo clock forward; returns its new offset in seconds."""
    async with pool.acquire() as conn:
        return await store.advance_clock(conn, seconds)
