"""The other services' parts of a person's export, fetched on the person's behalf.

Each service keeps its part of an export in its own database (health content never
travels on a topic) and hands it only to the person it is about
(`GET /me/exports/{request_id}`, chassis.rights). To give the person ONE document,
notifications fetches those parts with the person's own token while answering them:
no service trusts another, each still checks who asks and records the read in the
person's access log. Reached at `export_parts_url` (the gateway, by default).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import structlog

from chassis.errors import NotFound, Unavailable

log = structlog.get_logger("notifications.export_parts")

# service names -> their parts; raises NotFound or Unavailable.
FetchParts = Callable[[Sequence[str]], Awaitable[dict[str, dict[str, Any]]]]

EXPIRED = "Your export is no longer kept (30 days): ask for a new one"


def fetcher(
    url_template: str,
    request_id: uuid.UUID,
    headers: dict[str, str],
    timeout_s: float,
) -> FetchParts:
    """Fetches each named service's part of this export, all at once, with `headers` (the
    person's authorization and the request's ids) passed on as they came."""

    async def fetch(services: Sequence[str]) -> dict[str, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as http:

            async def one(service: str) -> dict[str, Any]:
                url = url_template.format(service=service) + f"/me/exports/{request_id}"
                try:
                    answer = await http.get(url)
                except httpx.HTTPError as exc:
                    log.warning("export part unreachable", service=service, error=str(exc))
                    raise Unavailable(
                        f"The {service} part of your export cannot be fetched now: try again",
                        code="part_unavailable",
                    ) from exc
                if answer.status_code == 404:
                    raise NotFound(EXPIRED, code="export_expired")
                if answer.status_code != 200:
                    log.warning("export part refused", service=service, status=answer.status_code)
                    raise Unavailable(
                        f"The {service} part of your export cannot be fetched now: try again",
                        code="part_unavailable",
                    )
                part: dict[str, Any] = answer.json()
                return part

            fetched = await asyncio.gather(*(one(s) for s in services))
        return dict(zip(services, fetched, strict=True))

    return fetch
