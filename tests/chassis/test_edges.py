"""The chassis at the edge: an unexpected error leaves the connection usable and its log
line free of the input; metrics answer on their own port only; token lifetimes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import uvicorn

from chassis import auth
from chassis.app import build
from chassis.infra import free_port
from tests.chassis.ledger import LEDGER, LedgerSettings


@contextlib.asynccontextmanager
async def over_http(app: Any) -> AsyncIterator[str]:
    """The app under a real uvicorn on loopback (connections behave as in production)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(300):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request and its answer on an open connection."""
    writer.write(f"GET {target} HTTP/1.1\r\nhost: test\r\nx-request-id: r-9\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(
        (k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)
    )
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def test_a_500_keeps_the_connection_and_its_log_line_keeps_no_input(migrated, capsys) -> None:
    settings = await migrated(LEDGER)
    secret = "Anna Andersson 19800101-1234"
    async with over_http(build(LEDGER, settings, "api")) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for _ in range(3):  # one connection throughout: the gateway's pooled one
                status, headers, body = await _exchange(
                    reader, writer, "/fails?value=" + secret.replace(" ", "%20")
                )
                assert status == 500 and json.loads(body)["code"] == "internal"
                assert headers["x-request-id"] == "r-9"
                assert headers.get("connection") != "close"
                status, _, _ = await _exchange(reader, writer, "/healthz")
                assert status == 200
        finally:
            writer.close()
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "unexpected error" in logged and "RuntimeError" in logged
    assert secret not in logged and "19800101" not in logged


async def test_the_api_serves_metrics_only_on_its_metrics_port(migrated, serve) -> None:
    settings = await migrated(LEDGER)
    app = build(LEDGER, settings, "api")
    async with serve(app) as http:
        await http.get("/healthz")
        assert (await http.get("/metrics")).status_code == 404
        port = app._application.state.runtime.metrics_port
        assert port and port != settings.http_port
        async with httpx.AsyncClient() as plain:
            metrics = await plain.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
        assert 'samtal_http_requests_total{method="GET",route="/healthz"' in metrics.text
        assert "/metrics" not in json.dumps((await http.get("/openapi.json")).json()["paths"])
    async with serve(build(LEDGER, settings, "worker")) as worker:
        # the worker's port is never routed by the gateway: metrics stay there
        assert (await worker.get("/metrics")).status_code == 200


def _claims(role: str, **changes: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "sub": str(uuid.uuid4()),
        "role": role,
        "iss": "samtal",
        "aud": "samtal",
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_tokens_need_exp_and_iat_and_a_lifetime_within_their_roles(jwt_keys) -> None:
    private, public = jwt_keys
    settings = LedgerSettings(
        jwt_public_keys=[public], jwt_max_lifetime_s={"client": 7200, "admin": 600}
    )

    def verdict(claims: dict[str, Any]) -> str:
        try:
            auth.verify(jwt.encode(claims, private, algorithm="RS256"), settings)
        except Exception as exc:
            return str(getattr(exc, "detail", exc))
        return "ok"

    now = int(datetime.now(UTC).timestamp())
    assert verdict(_claims("client")) == "ok"
    assert "exp" in verdict(_claims("client", exp=None))
    assert "iat" in verdict(_claims("client", iat=None))
    assert "longer" in verdict(_claims("client", exp=now + 50 * 365 * 24 * 3600))
    assert "longer" in verdict(_claims("admin"))  # an hour is too long for an admin
    assert verdict(_claims("admin", exp=now + 600)) == "ok"
    assert "not yet valid" in verdict(_claims("client", iat=now + 3600, exp=now + 4000))
    # a role without a configured maximum gets no token at all
    assert "longer" in verdict(_claims("therapist"))
    # minting within the limit works with the default settings
    default = LedgerSettings(jwt_public_keys=[public])
    for role in auth.ROLES:
        assert auth.verify(auth.mint(private, uuid.uuid4(), role), default).role == role
    with pytest.raises(Exception, match="longer"):
        auth.verify(auth.mint(private, uuid.uuid4(), "admin", ttl=timedelta(days=1)), default)
