"""Traces are exported over OTLP only when an endpoint is configured."""

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chassis import auth, observability
from chassis.app import build
from chassis.infra import free_port
from tests.chassis.ledger import LEDGER


class Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Collector.received.append((self.path, len(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_spans_reach_a_configured_collector(migrated, serve, jwt_keys) -> None:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        quiet = await migrated(LEDGER)
        assert not observability.configure_tracing(quiet)  # no endpoint: nothing exported
        settings = await migrated(LEDGER, otlp_endpoint=f"http://127.0.0.1:{port}")
        async with serve(build(LEDGER, settings, "api")) as http:
            token = auth.mint(jwt_keys[0], uuid.uuid4(), "client")
            assert (await http.get("/me", headers={"authorization": f"Bearer {token}"})).is_success
        observability.flush_traces(shutdown=True)
        assert any(path == "/v1/traces" and size > 0 for path, size in Collector.received)
    finally:
        server.shutdown()
