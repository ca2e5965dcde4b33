"""SQL of the demo clock (an offset added to real time)."""

from __future__ import annotations

import asyncpg


async def clock_offset_s(conn: asyncpg.Connection) -> float:
    offset = await conn.fetchval("SELECT offset_s FROM demo_clock")
    return float(offset or 0.0)


async def advance_clock(conn: asyncpg.Connection, seconds: float) -> float:
    return float(
        await conn.fetchval(
            "INSERT INTO demo_clock (offset_s) VALUES ($1) ON CONFLICT (only_row)"
            " DO UPDATE SET offset_s = demo_clock.offset_s + excluded.offset_s"
            " RETURNING offset_s",
            seconds,
        )
    )
