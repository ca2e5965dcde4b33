"""The real Envoy gateway, rendered by deploy/gateway/render.py, in front of echo upstreams."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from chassis.auth import generate_keypair, mint

ORIGIN = "https://app.samtal.example"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def token(gateway_keys) -> str:  # type: ignore[no-untyped-def]
    return mint(gateway_keys[0], uuid.uuid4(), "client")


def test_envoy_accepts_the_rendered_config(envoy_path, gateway_config, gateway_run) -> None:  # type: ignore[no-untyped-def]
    result = gateway_run.validate_config(gateway_config())
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_rejects_a_broken_config(envoy_path, gateway_config, gateway_run) -> None:  # type: ignore[no-untyped-def]
    broken = gateway_config().replace('"prefix_rewrite"', '"prefix_rewrit"')
    assert gateway_run.validate_config(broken).returncode != 0


@pytest.mark.parametrize("svc", ["catalog", "matching", "booking", "notifications"])
def test_each_prefix_routes_to_its_service_with_the_prefix_rewritten(http, token, svc) -> None:  # type: ignore[no-untyped-def]
    r = http.get(f"/api/{svc}/things/42?x=1", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["service"] == svc
    assert r.json()["path"] == "/things/42?x=1"
    # the token travels on: services verify it again
    assert r.json()["headers"]["authorization"] == f"Bearer {token}"


def test_protected_route_without_token_is_401(http) -> None:  # type: ignore[no-untyped-def]
    r = http.get("/api/booking/courses")
    assert r.status_code == 401
    assert http.post("/api/catalog/therapists", json={}).status_code == 401  # only GET is public


def test_invalid_tokens_are_401(http, gateway_keys) -> None:  # type: ignore[no-untyped-def]
    stranger = generate_keypair()[0]
    expired = mint(gateway_keys[0], uuid.uuid4(), "client", ttl=timedelta(seconds=-120))
    wrong_aud = mint(gateway_keys[0], uuid.uuid4(), "client", audience="other")
    wrong_iss = mint(gateway_keys[0], uuid.uuid4(), "client", issuer="other")
    for bad in (mint(stranger, uuid.uuid4(), "client"), expired, wrong_iss, "garbage"):
        assert http.get("/api/booking/courses", headers=bearer(bad)).status_code == 401
        # a public route admits a missing token, never an invalid one
        assert http.get("/api/catalog/therapists", headers=bearer(bad)).status_code == 401
    # Envoy answers a well-signed token for another audience with 403
    assert http.get("/api/booking/courses", headers=bearer(wrong_aud)).status_code == 403
    assert http.get("/api/catalog/therapists", headers=bearer(wrong_aud)).status_code == 403


def test_public_browse_and_health_need_no_token(http) -> None:  # type: ignore[no-untyped-def]
    for path in ("/api/catalog/therapists", "/api/catalog/therapists?language=sv",
                 f"/api/catalog/therapists/{uuid.uuid4()}", "/api/catalog/methods",
                 "/api/catalog/areas", "/api/booking/healthz", "/api/matching/readyz",
                 "/api/notifications/healthz", "/api/catalog/healthz"):
        r = http.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text)
    assert http.get("/healthz").text == "ok\n"  # the gateway's own


def test_metrics_are_not_exposed_at_the_edge(http, token) -> None:  # type: ignore[no-untyped-def]
    assert http.get("/api/catalog/metrics", headers=bearer(token)).status_code == 404


def test_request_id_is_generated_when_missing_and_kept_when_given(http) -> None:  # type: ignore[no-untyped-def]
    r = http.get("/api/catalog/methods")
    generated = r.headers["x-request-id"]
    assert uuid.UUID(generated)
    assert r.json()["headers"]["x-request-id"] == generated  # the upstream saw the same id
    for mine in ("req-" + uuid.uuid4().hex, str(uuid.uuid4()), "frontend-7"):
        r = http.get("/api/catalog/methods", headers={"x-request-id": mine})
        assert r.headers["x-request-id"] == mine
        assert r.json()["headers"]["x-request-id"] == mine
    # also on answers the gateway gives itself
    assert http.get("/api/booking/courses").headers.get("x-request-id")


def test_cors_preflight_for_a_frontend_origin(http) -> None:  # type: ignore[no-untyped-def]
    r = http.options("/api/booking/courses", headers={
        "origin": ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"]
    r = http.get("/api/catalog/methods", headers={"origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in r.headers["access-control-expose-headers"]


def test_cors_refuses_an_unknown_origin(http) -> None:  # type: ignore[no-untyped-def]
    r = http.options("/api/booking/courses", headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_too_large_body_is_413(http, token) -> None:  # type: ignore[no-untyped-def]
    ok = http.post("/api/booking/things", content=b"x" * 1000, headers=bearer(token))
    assert ok.status_code == 200 and ok.json()["body_bytes"] == 1000
    r = http.post("/api/booking/things", content=b"x" * (1024 * 1024 + 1), headers=bearer(token))
    assert r.status_code == 413


def test_rate_limit_answers_429_past_the_limit(envoy_path, gateway_config, gateway_run) -> None:  # type: ignore[no-untyped-def]
    with gateway_run.start_gateway(gateway_config(rate_limit_per_s=3, rate_limit_burst=3)) as gw, \
            httpx.Client(base_url=gw.url, timeout=10) as http:
        codes = [http.get("/api/catalog/methods").status_code for _ in range(10)]
    assert codes[:3] == [200, 200, 200], codes
    assert 429 in codes, codes
