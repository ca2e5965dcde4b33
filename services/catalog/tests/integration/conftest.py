"""Helpers for the catalog's integration tests (real Postgres, real broker)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from chassis.auth import Role, mint

Headers = dict[str, str]


@pytest.fixture
def auth(jwt_keys: tuple[str, str]) -> Callable[..., Headers]:
    """`auth("admin")` or `auth("therapist", person_id)`: a bearer header."""

    def headers(role: Role, subject: uuid.UUID | None = None) -> Headers:
        token = mint(jwt_keys[0], subject or uuid.uuid4(), role)
        return {"authorization": f"Bearer {token}"}

    return headers


def profile_data(**changes: Any) -> dict[str, Any]:
    """A valid profile as an admin submits it; `changes` override fields."""
    base: dict[str, Any] = {
        "name": "Elin Bergqvist",
        "profession": "psychologist",
        "licence_number": "402117",
        "certifications": [],
        "methods": ["IPT"],
        "age_groups": ["adults"],
        "focus_areas": ["grief", "depression"],
        "languages": ["sv", "en"],
        "modes": ["video", "in_person"],
        "city": "Stockholm",
        "practice_address": "Götgatan 48, 118 26 Stockholm",
        "bio": "Legitimerad psykolog som arbetar med IPT.",
        "capacity": 12,
        "accepting_new_clients": True,
    }
    base.update(changes)
    return base


@pytest.fixture
def profile() -> Callable[..., dict[str, Any]]:
    return profile_data


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """`await eventually(async_check)`: poll until the check holds (fails after a timeout)."""
    return _eventually
