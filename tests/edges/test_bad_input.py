"""Hostile input answers 422 naming the field, stores nothing, and the next request is fine.

One test per class of bad input the issue found (NUL, unpaired surrogate, integers past
2^63, an endless time zone, an endless text), on the routes where it was found; then the
same classes on every write route of every service, enumerated from its OpenAPI (so a
route added later is covered without editing this file).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from chassis.app import build
from chassis.auth import ROLES, mint

BIG = 2**63  # one past the largest bigint
NUL = "Anna\x00Andersson"
SURROGATE = "Anna\ud800"
ENDLESS = "x" * 20_000  # past every bound (TEXT_MAX is 10,000)


def _definitions() -> dict[str, Any]:
    from booking.app import DEFINITION as booking
    from catalog.app import DEFINITION as catalog
    from matching.app import DEFINITION as matching
    from notifications.app import DEFINITION as notifications

    return {d.name: d for d in (catalog, matching, booking, notifications)}


@dataclass
class Service:
    name: str
    http: httpx.AsyncClient
    schema: str
    tokens: dict[str, str]

    async def send(
        self, method: str, path: str, body: Any = None, role: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.tokens[role]}"} if role else {}
        if body is not None:
            # Written in ASCII so a lone surrogate travels as the JSON escape \\ud800.
            kw["content"] = json.dumps(body, ensure_ascii=True)
            headers["content-type"] = "application/json"
        params = kw.pop("params", None)
        if params:
            # A URL carries a lone surrogate as the bytes UTF-8 would give it (WTF-8).
            path += "?" + "&".join(
                f"{k}={quote(str(v).encode('utf-8', 'surrogatepass'))}" for k, v in params.items()
            )
        return await self.http.request(method, path, headers=headers, **kw)


@pytest.fixture
async def platform(migrated, serve, jwt_keys, database_dsn) -> AsyncIterator[dict[str, Any]]:
    """Every service's api in this process (no workers: nothing here needs events)."""
    services: dict[str, Service] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name, definition in _definitions().items():
            settings = await migrated(definition)
            http = await stack.enter_async_context(serve(build(definition, settings, "api")))
            tokens = {r: mint(jwt_keys[0], uuid.uuid4(), r) for r in ROLES}  # type: ignore[arg-type]
            services[name] = Service(name, http, settings.db_schema, tokens)
        conn = await asyncpg.connect(database_dsn)
        stack.push_async_callback(conn.close)
        yield {"services": services, "db": conn}


_FINGERPRINTS: dict[str, str] = {}


async def stored_rows(conn: asyncpg.Connection, schema: str) -> str:
    """A fingerprint of every row of every table of the service's schema (outbox and
    audit included): any insert, update or delete changes it. One query per call."""
    if schema not in _FINGERPRINTS:
        tables = await conn.fetch(
            "select table_name from information_schema.tables"
            " where table_schema = $1 and table_type = 'BASE TABLE' order by table_name",
            schema,
        )
        parts = [
            f"(select count(*)::text || md5(coalesce(string_agg(r::text, ',' order by r::text),"
            f""" '')) from "{schema}"."{t["table_name"]}" r)"""
            for t in tables
        ]
        _FINGERPRINTS[schema] = f"select concat_ws('|', {', '.join(parts)})"
    return str(await conn.fetchval(_FINGERPRINTS[schema]))


def named(answer: httpx.Response, field: str) -> bool:
    """A 422 whose errors name the field (as the last part of its location)."""
    if answer.status_code != 422:
        return False
    body = answer.json()
    errors = body.get("errors", [])
    return any(
        str((e.get("loc") or [""])[-1]) == field or e.get("field") == field for e in errors
    ) or str(body.get("detail", "")).lower().startswith(f"{field}:")


async def refused_and_fine(
    platform: dict[str, Any],
    service: str,
    method: str,
    path: str,
    field: str,
    *,
    body: Any = None,
    role: str | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    svc: Service = platform["services"][service]
    before = await stored_rows(platform["db"], svc.schema)
    answer = await svc.send(method, path, body, role, params=params)
    assert named(answer, field), (service, method, path, field, answer.status_code, answer.text)
    assert await stored_rows(platform["db"], svc.schema) == before, "something was stored"
    # the next request is answered as usual
    assert (await svc.send("GET", "/readyz")).status_code == 200


def profile(**changes: Any) -> dict[str, Any]:
    body = {
        "name": "Elin Bergqvist",
        "profession": "psychologist",
        "licence_number": "402117",
        "methods": ["IPT"],
        "age_groups": ["adults"],
        "languages": ["sv"],
        "modes": ["video", "in_person"],
        "city": "Stockholm",
        "practice_address": "Götgatan 48, Stockholm",
        "bio": "Legitimerad psykolog.",
        "capacity": 12,
    }
    body.update(changes)
    return body


def intake(**changes: Any) -> dict[str, Any]:
    body = {
        "age": 30,
        "languages": ["sv"],
        "preferred_mode": "either",
        "city": "Stockholm",
        "problem_areas": ["grief"],
        "phq9": [1, 1, 1, 1, 1, 1, 1, 1, 0],
        "free_text": "Jag har svårt att sova.",
        "consent_to_treatment": True,
        "consent_to_health_data": True,
    }
    body.update(changes)
    return body


def contacts(**changes: Any) -> dict[str, Any]:
    body = {"email": "anna@example.se", "language": "sv", "time_zone": "Europe/Stockholm"}
    body.update(changes)
    return body


TEXT_ROUTES = [
    (
        "catalog",
        "POST",
        "/therapists",
        "admin",
        profile,
        ("name", "city", "practice_address", "bio"),
    ),
    ("catalog", "PUT", "/therapists/{id}", "admin", profile, ("name", "city", "bio")),
    ("catalog", "PATCH", "/therapists/me", "therapist", dict, ("bio", "city", "practice_address")),
    ("matching", "POST", "/intakes", "client", intake, ("free_text", "city")),
    ("notifications", "PUT", "/contacts/me", "client", contacts, ("email", "phone")),
]


@pytest.mark.parametrize("bad", [NUL, SURROGATE, ENDLESS], ids=["nul", "surrogate", "endless"])
async def test_bad_text_in_the_fields_where_it_was_found(platform, bad) -> None:
    for service, method, path, role, valid, fields in TEXT_ROUTES:
        path = path.replace("{id}", str(uuid.uuid4()))
        for field in fields:
            await refused_and_fine(
                platform, service, method, path, field, body=valid(**{field: bad}), role=role
            )
    # the admin's partial edit of an existing profile: refused, the profile unchanged
    catalog: Service = platform["services"]["catalog"]
    created = await catalog.send("POST", "/therapists", profile(), "admin")
    assert created.status_code == 201, created.text
    therapist = created.json()["therapist_id"]
    for field in ("name", "city", "bio"):
        await refused_and_fine(
            platform,
            "catalog",
            "PATCH",
            f"/therapists/{therapist}",
            field,
            body={field: bad},
            role="admin",
        )


@pytest.mark.parametrize("bad", [NUL, ENDLESS], ids=["nul", "endless"])
async def test_bad_text_in_a_public_query(platform, bad) -> None:
    await refused_and_fine(platform, "catalog", "GET", "/therapists", "city", params={"city": bad})


async def test_a_surrogate_in_a_url_is_read_as_a_replacement_character(platform) -> None:
    """A URL cannot carry a lone surrogate: its bytes (ED A0 80) are not UTF-8 and are read
    as U+FFFD, a valid character. The answer is an ordinary one, never a 5xx."""
    catalog: Service = platform["services"]["catalog"]
    answer = await catalog.send("GET", "/therapists", params={"city": SURROGATE})
    assert answer.status_code == 200 and answer.json()["items"] == []


async def test_integers_past_any_column(platform) -> None:
    await refused_and_fine(platform, "catalog", "GET", "/therapists", "page", params={"page": BIG})
    await refused_and_fine(
        platform, "notifications", "GET", "/inbox", "offset", params={"offset": BIG}, role="client"
    )
    await refused_and_fine(
        platform, "notifications", "POST", f"/deliveries/{BIG}/resend", "delivery_id", role="admin"
    )
    await refused_and_fine(
        platform,
        "catalog",
        "POST",
        "/therapists",
        "capacity",
        body=profile(capacity=BIG),
        role="admin",
    )


async def test_an_endless_time_zone(platform) -> None:
    await refused_and_fine(
        platform,
        "notifications",
        "PUT",
        "/contacts/me",
        "time_zone",
        body=contacts(time_zone=ENDLESS),
        role="client",
    )
    for name in ("../../../etc/passwd", "Europe/Nowhere", "UTC\x00"):
        await refused_and_fine(
            platform,
            "notifications",
            "PUT",
            "/contacts/me",
            "time_zone",
            body=contacts(time_zone=name),
            role="client",
        )
    await refused_and_fine(
        platform,
        "catalog",
        "POST",
        "/therapists",
        "time_zone",
        body=profile(time_zone=ENDLESS),
        role="admin",
    )


async def test_messages_do_not_quote_personal_values(platform) -> None:
    svc: Service = platform["services"]["notifications"]
    answer = await svc.send(
        "PUT", "/contacts/me", contacts(email="anna.<secret>@example.se"), "client"
    )
    assert answer.status_code == 422 and "secret" not in answer.text


# ------------------------------------------------------------------ every write route


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _kinds(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    schema = _resolve(spec, schema)
    kinds = {schema.get("type")} if "type" in schema else set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        kinds |= _kinds(spec, option)
    return {k for k in kinds if k}


def write_cases(spec: dict[str, Any]) -> Iterator[tuple[str, str, str, str, Any]]:
    """(method, path, where, field, bad value) for every text and integer a write takes."""
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            for param in op.get("parameters", []):
                kinds = _kinds(spec, param.get("schema", {}))
                if "integer" in kinds:
                    yield method, path, param["in"], param["name"], BIG
                if "string" in kinds and param["in"] == "query":
                    for bad in (NUL, SURROGATE, ENDLESS):
                        yield method, path, "query", param["name"], bad
            content = op.get("requestBody", {}).get("content", {})
            body = _resolve(spec, content.get("application/json", {}).get("schema", {}))
            for field, schema in body.get("properties", {}).items():
                kinds = _kinds(spec, schema)
                if "integer" in kinds:
                    yield method, path, "body", field, BIG
                if "string" in kinds:
                    for bad in (NUL, SURROGATE, ENDLESS):
                        yield method, path, "body", field, bad


def _fill(
    spec: dict[str, Any], path: str, op: dict[str, Any], where: str, field: str, bad: Any
) -> str:
    for param in op.get("parameters", []):
        if param["in"] == "path":
            if where == "path" and param["name"] == field:
                value: Any = bad
            else:
                value = 1 if "integer" in _kinds(spec, param.get("schema", {})) else uuid.uuid4()
            path = path.replace("{" + param["name"] + "}", str(value))
    return path


async def test_every_write_route_refuses_every_class(platform) -> None:
    checked = 0
    for name, svc in platform["services"].items():
        spec = (await svc.http.get("/openapi.json")).json()
        for method, path, where, field, bad in write_cases(spec):
            op = spec["paths"][path][method]
            url = _fill(spec, path, op, where, field, bad)
            body = {field: bad} if where == "body" else None
            params = {field: bad} if where == "query" else None
            # the first role the route admits (401/403 come before validation)
            for role in ROLES:
                answer = await svc.send(method.upper(), url, body, role, params=params)
                if answer.status_code not in (401, 403):
                    break
            await refused_and_fine(
                platform, name, method.upper(), url, field, body=body, role=role, params=params
            )
            checked += 1
    # every service has writes taking text or numbers: the sweep really swept
    assert checked >= 40, checked
