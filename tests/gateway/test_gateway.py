"""The real Envoy gateway, rendered by samtal_deploy.gateway.render, in front of echo upstreams."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from chassis.auth import generate_keypair, mint

ORIGIN = "https://app.samtal.example"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def token(gateway_keys) -> str:
    return mint(gateway_keys[0], uuid.uuid4(), "client")


def test_envoy_accepts_the_rendered_config(envoy_path, gateway_config, gateway_run) -> None:
    result = gateway_run.validate_config(gateway_config())
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_rejects_a_broken_config(envoy_path, gateway_config, gateway_run) -> None:
    broken = gateway_config().replace('"prefix_rewrite"', '"prefix_rewrit"')
    assert gateway_run.validate_config(broken).returncode != 0


@pytest.mark.parametrize("svc", ["catalog", "matching", "booking", "notifications"])
def test_each_prefix_routes_to_its_service_with_the_prefix_rewritten(http, token, svc) -> None:
    r = http.get(f"/api/{svc}/things/42?x=1", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["service"] == svc
    assert r.json()["path"] == "/things/42?x=1"
    # the token travels on: services verify it again
    assert r.json()["headers"]["authorization"] == f"Bearer {token}"


def test_protected_route_without_token_is_401(http) -> None:
    r = http.get("/api/booking/courses")
    assert r.status_code == 401
    assert http.post("/api/catalog/therapists", json={}).status_code == 401  # only GET is public


def test_invalid_tokens_are_401(http, gateway_keys) -> None:
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


def test_public_browse_and_health_need_no_token(http) -> None:
    for path in (
        "/api/catalog/therapists",
        "/api/catalog/therapists?language=sv",
        f"/api/catalog/therapists/{uuid.uuid4()}",
        "/api/catalog/methods",
        "/api/catalog/areas",
        "/api/booking/healthz",
        "/api/matching/readyz",
        "/api/notifications/healthz",
        "/api/catalog/healthz",
    ):
        r = http.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text)
    assert http.get("/healthz").text == "ok\n"  # the gateway's own


def test_metrics_are_not_exposed_at_the_edge(http, token) -> None:
    assert http.get("/api/catalog/metrics", headers=bearer(token)).status_code == 404


def test_request_id_is_generated_when_missing_and_kept_when_given(http) -> None:
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


def test_cors_preflight_for_a_frontend_origin(http) -> None:
    r = http.options(
        "/api/booking/courses",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"]
    r = http.get("/api/catalog/methods", headers={"origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in r.headers["access-control-expose-headers"]


def test_cors_refuses_an_unknown_origin(http) -> None:
    r = http.options(
        "/api/booking/courses",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_too_large_body_is_413(http, token) -> None:
    ok = http.post("/api/booking/things", content=b"x" * 1000, headers=bearer(token))
    assert ok.status_code == 200 and ok.json()["body_bytes"] == 1000
    r = http.post("/api/booking/things", content=b"x" * (1024 * 1024 + 1), headers=bearer(token))
    assert r.status_code == 413


def test_rate_limit_answers_429_past_the_limit(envoy_path, gateway_config, gateway_run) -> None:
    with (
        gateway_run.start_gateway(gateway_config(rate_limit_per_s=3, rate_limit_burst=3)) as gw,
        httpx.Client(base_url=gw.url, timeout=10) as http,
    ):
        codes = [http.get("/api/catalog/methods").status_code for _ in range(10)]
    assert codes[:3] == [200, 200, 200], codes
    assert 429 in codes, codes


def test_deployed_gateway_configs_are_valid_envoy_configs(
    envoy_path, gateway_render, gateway_run, gateway_keys, tmp_path
) -> None:
    """The config Kubernetes mounts (deploy/k8s/base/generated.yaml) and the one compose
    mounts (render.py local) both pass `envoy --mode validate`."""
    from pathlib import Path

    yaml = pytest.importorskip("yaml", reason="PyYAML (PyPI `pyyaml`) reads the manifests")
    base = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "generated.yaml"
    (configmap,) = [
        d
        for d in yaml.safe_load_all(base.read_text())
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gateway"
    ]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(gateway_render.pem_to_jwks(gateway_keys[1]))
    k8s = configmap["data"]["envoy.yaml"].replace("/etc/envoy/jwks/jwks.json", str(jwks))
    result = gateway_run.validate_config(k8s)
    assert result.returncode == 0, result.stdout + result.stderr
    local = gateway_render.write_local(tmp_path / "local").read_text()
    result = gateway_run.validate_config(local)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jwks_lists_every_key_during_a_rotation(gateway_render) -> None:
    import json

    old, new = generate_keypair()[1], generate_keypair()[1]
    keys = json.loads(gateway_render.pem_to_jwks(old, new))["keys"]
    assert len(keys) == 2 and keys[0]["kid"] != keys[1]["kid"]
    assert all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig" for k in keys)


def test_a_token_signed_by_either_key_passes_during_a_rotation(
    envoy_path, gateway_config, gateway_run, gateway_render
) -> None:
    (old_priv, old_pub), (new_priv, new_pub) = generate_keypair(), generate_keypair()
    config = gateway_config(jwks_json=gateway_render.pem_to_jwks(old_pub, new_pub))
    with gateway_run.start_gateway(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as http:
        for priv in (old_priv, new_priv):
            token = mint(priv, uuid.uuid4(), "therapist")
            assert http.get("/api/booking/x", headers=bearer(token)).status_code == 200
        stranger = mint(generate_keypair()[0], uuid.uuid4(), "therapist")
        assert http.get("/api/booking/x", headers=bearer(stranger)).status_code == 401


def test_paths_are_normalised_before_routing_and_rules(http, token) -> None:
    # %6d is m: the hidden metrics route still answers, not the service
    for sneaky in (
        "/api/catalog/%6detrics",
        "/api/catalog/%6D%65trics",
        "/api/catalog/x/../metrics",
    ):
        assert http.get(sneaky, headers=bearer(token)).status_code == 404, sneaky
    r = http.get("/api//booking//things///42", headers=bearer(token))
    assert r.status_code == 200 and r.json()["path"] == "/things/42"
    r = http.get("/api/booking/th%69ngs", headers=bearer(token))
    assert r.status_code == 200 and r.json()["path"] == "/things"
    # a public route spelled differently is still the same route, and a private one is
    # still private however it is spelled
    assert http.get("/api/catalog//therapists").status_code == 200
    assert http.get("/api/%62ooking/courses").status_code == 401
    assert http.get("/api/catalog/therapists/../../booking/courses").status_code == 401
    # what cannot be normalised safely is refused
    assert http.get("/api/booking/a%2Fb", headers=bearer(token)).status_code == 400
    assert http.get("/api/booking/a%5Cb", headers=bearer(token)).status_code == 400


def test_tokens_need_exp_and_a_bounded_lifetime_at_the_edge(http, gateway_keys) -> None:
    import jwt as pyjwt

    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": str(uuid.uuid4()), "role": "client", "iss": "samtal", "aud": "samtal"}
    no_exp = pyjwt.encode({**claims, "iat": now}, gateway_keys[0], algorithm="RS256")
    fifty_years = pyjwt.encode(
        {**claims, "iat": now, "exp": now + 50 * 365 * 24 * 3600},
        gateway_keys[0],
        algorithm="RS256",
    )
    fine = pyjwt.encode(
        {**claims, "iat": now, "exp": now + 3600}, gateway_keys[0], algorithm="RS256"
    )
    for bad in (no_exp, fifty_years):
        assert http.get("/api/booking/courses", headers=bearer(bad)).status_code == 401
        assert http.get("/api/catalog/therapists", headers=bearer(bad)).status_code == 401
    assert http.get("/api/booking/courses", headers=bearer(fine)).status_code == 200


def test_requests_go_to_a_live_replica_when_one_is_down(
    envoy_path, echo_upstreams, gateway_config, gateway_run
) -> None:
    """A replica that refuses connections: every request, writes too, reaches the other
    one (a refused connection never reached any replica, so a retry is always safe)."""
    from chassis.infra import free_port

    dead = ("127.0.0.1", free_port())
    upstreams = {**echo_upstreams, "booking": [dead, echo_upstreams["booking"]]}
    config = gateway_config(upstreams=upstreams)
    with gateway_run.start_gateway(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as h:
        codes = [h.get("/api/booking/healthz").status_code for _ in range(20)]
        codes += [h.post("/api/booking/healthz", json={}).status_code for _ in range(20)]
    assert codes == [200] * 40, codes


# A replica that notes each write it receives (path per line, in <dir>/arrived-<port>) and
# holds it until <dir>/release exists: the test knows what is in flight where.
SLOW_REPLICA = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

port, where = int(sys.argv[1]), Path(sys.argv[2])

class Holding(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with open(where / f"arrived-{port}", "a") as arrived:
            arrived.write(self.path + "\\n")
        deadline = time.monotonic() + 30
        while not (where / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Holding).serve_forever()
"""


def test_writes_in_flight_on_a_killed_replica_are_all_retried_on_the_other(
    envoy_path, gateway_config, gateway_run, token, tmp_path
) -> None:
    """Killing one of two replicas cuts off every write it was working on: half of what is
    in flight. Each booking of a session (its body carries the key booking deduplicates
    on) is retried on the other replica, the retry budget admitting them all at once (a
    budget of a fifth of the active requests answered 503s here); a write booking does
    not deduplicate is not sent twice, whatever headers it carries: it answers 503."""
    import asyncio
    import subprocess
    import sys
    import time

    from chassis.infra import free_port

    ports = [free_port(), free_port()]
    replicas = [
        subprocess.Popen([sys.executable, "-c", SLOW_REPLICA, str(port), str(tmp_path)])
        for port in ports
    ]

    def arrived(port: int) -> list[str]:
        path = tmp_path / f"arrived-{port}"
        return path.read_text().split() if path.exists() else []

    try:
        for port in ports:  # both listening before the gateway's first health check
            deadline = time.monotonic() + 10
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the replica never listened"
                    time.sleep(0.05)
        upstreams = {s: ("127.0.0.1", ports[0]) for s in ("catalog", "matching", "notifications")}
        upstreams["booking"] = [("127.0.0.1", port) for port in ports]  # type: ignore[assignment]
        config = gateway_config(upstreams=upstreams, rate_limit_per_s=100_000)
        keyed_path, other_path = "/courses/c/sessions", "/sessions/s/cancel"
        with gateway_run.start_gateway(config) as gw:

            async def post(h: httpx.AsyncClient, path: str) -> httpx.Response:
                key = uuid.uuid4().hex
                headers = {**bearer(token), "idempotency-key": key}
                return await h.post(f"/api/booking{path}", json={}, headers=headers)

            async def burst() -> tuple[list[httpx.Response], list[httpx.Response], list[str]]:
                limits = httpx.Limits(max_connections=64)
                async with httpx.AsyncClient(base_url=gw.url, timeout=60, limits=limits) as h:
                    keyed = [post(h, keyed_path) for _ in range(24)]
                    # a write booking does not deduplicate: a header alone must not retry it
                    other = [post(h, other_path) for _ in range(16)]
                    answers = asyncio.gather(*keyed, *other)
                    deadline = time.monotonic() + 20
                    while len(arrived(ports[0]) + arrived(ports[1])) < 40:
                        assert time.monotonic() < deadline, "the writes never all arrived"
                        await asyncio.sleep(0.02)
                    cut_off = arrived(ports[1])  # in flight on the replica killed now
                    replicas[1].kill()
                    replicas[1].wait(10)
                    (tmp_path / "release").touch()
                    done = await answers
                return done[:24], done[24:], cut_off

            keyed, other, cut_off = asyncio.run(burst())
            retried = gw.counters(r"^cluster\.booking\.upstream_rq_retry")
        cut_keyed, cut_other = cut_off.count(keyed_path), cut_off.count(other_path)
        assert cut_keyed > 0 and cut_other > 0, cut_off
        assert [r.status_code for r in keyed] == [200] * 24, (
            [r.text[:100] for r in keyed],
            retried,
        )
        assert retried["cluster.booking.upstream_rq_retry_overflow"] == 0, retried
        answered = sorted(r.status_code for r in other)
        assert answered == [200] * (16 - cut_other) + [503] * cut_other, (answered, cut_off)
    finally:
        for replica in replicas:
            replica.kill()
            replica.wait(10)
