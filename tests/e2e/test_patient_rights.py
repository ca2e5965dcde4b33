"""Patient rights across the four services: one access log for the client (and, below,
export and erasure), against the real Postgres and broker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


@pytest.mark.timeout(300)
async def test_the_client_sees_every_services_reads_in_one_access_log(rights_platform) -> None:
    client, therapist = uuid.uuid4(), uuid.uuid4()
    async with rights_platform() as p:
        done = await p.a_client_everywhere(client, therapist)
        as_client = p.who("client", client)
        wanted = {
            ("booking", "therapist", "read", "course", done["course_id"]),
            ("matching", "clinician", "read", "intake", done["intake_id"]),
            ("catalog", "admin", "hide", "review", done["review_id"]),
        }

        def seen(entries: list[dict[str, Any]]) -> set[tuple[str, ...]]:
            return {
                (e["service"], e["actor_role"], e["action"], e["resource"], e["resource_id"])
                for e in entries
            }

        async def all_three() -> Any:
            log = await p.call("notifications", "GET", "/me/access-log", as_client)
            return log if wanted <= seen(log["entries"]) else None

        log = await p.until("the three entries in the client's access log", all_three)
        entries = log["entries"]
        assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
        who = {e["resource"]: e["actor_id"] for e in entries if e["action"] in ("read", "hide")}
        assert who["intake"] == done["clinician_id"]
        assert who["course"] == str(therapist)

        # Paged, newest first: two at a time reach the same entries, none twice.
        paged: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = await p.call("notifications", "GET", "/me/access-log", as_client, params=params)
            paged += page["entries"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert paged == entries
        bad = await p.http["notifications"].get(
            "/me/access-log", headers=as_client, params={"cursor": "nonsense"}
        )
        assert bad.status_code == 422

        # Nobody else's: another person's log has none of these entries.
        other = await p.call(
            "notifications", "GET", "/me/access-log", p.who("client", uuid.uuid4())
        )
        assert other["entries"] == []
