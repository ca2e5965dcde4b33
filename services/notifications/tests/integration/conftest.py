"""A real SMTP server (aiosmtpd) and a real HTTP SMS provider on loopback, recording
what arrives; both can be told to fail to simulate an outage."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from chassis import db
from chassis.testing.waiting import until
from notifications.app import DEFINITION


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mail:
    to: list[str]
    message: EmailMessage
    arrived: float

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def attachments(self) -> list[EmailMessage]:
        return list(self.message.iter_attachments())  # type: ignore[arg-type]


class MailServer:
    """An SMTP server that keeps every message, or answers `fail_with` (e.g. '451 …')."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.attempts = 0
        self.fail_with: str | None = None
        self.delay = 0.0  # seconds each message takes (a slow server)
        # Recipients refused for good (550), e.g. an address that does not exist.
        self.unknown: set[str] = set()
        # The recipients whose messages were under way together, as each message began.
        self.under_way: list[frozenset[str]] = []
        self._in_data: set[str] = set()
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.unknown:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self._in_data.update(envelope.rcpt_tos)
            self.under_way.append(frozenset(self._in_data))
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self._in_data.difference_update(envelope.rcpt_tos)
            self.attempts += 1
            if self.fail_with:
                return self.fail_with
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.mails.append(Mail(list(envelope.rcpt_tos), message, time.monotonic()))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if address in m.to]

    def subjects(self, address: str) -> list[str]:
        return [m.subject for m in self.to(address)]


@dataclass
class Sms:
    to: str
    text: str
    authorization: str | None
    idempotency_key: str | None


class SmsProvider:
    """An HTTP SMS provider: POST {to, text}; answers `status` (503 = outage)."""

    def __init__(self) -> None:
        self.received: list[Sms] = []
        self.attempts = 0
        self.status = 200
        self.refused: set[str] = set()  # numbers answered 400 (permanent)
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with provider._lock:
                    provider.attempts += 1
                    status = provider.status
                    if body["to"] in provider.refused:
                        status = 400
                    if status == 200:
                        provider.received.append(
                            Sms(
                                body["to"],
                                body["text"],
                                self.headers.get("Authorization"),
                                self.headers.get("Idempotency-Key"),
                            )
                        )
                answer = json.dumps({"ok": status == 200}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def to(self, number: str) -> list[Sms]:
        with self._lock:
            return [s for s in self.received if s.to == number]


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


@pytest.fixture
def sms_provider() -> Iterator[SmsProvider]:
    provider = SmsProvider()
    provider.thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()


SMS_TOKEN = "test-sms-credential"


@pytest.fixture
def channel_settings(mail_server: MailServer, sms_provider: SmsProvider) -> dict[str, Any]:
    """Settings pointing the service at this test's SMTP server and SMS provider."""
    return dict(
        smtp_host="127.0.0.1",
        smtp_port=mail_server.port,
        smtp_starttls=False,
        smtp_from="Samtal <no-reply@samtal.test>",
        smtp_timeout_s=5,
        sms_url=sms_provider.url,
        sms_token=SMS_TOKEN,
        sms_timeout_s=5,
    )


async def _eventually(
    condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Wait until condition() is true (it may be a coroutine function)."""
    await until(what, condition, timeout=timeout, every=0.05)


@pytest.fixture
def eventually() -> Callable[..., Any]:
    """`await eventually(condition, timeout, what)`."""
    return _eventually


@pytest.fixture(autouse=True)
async def no_escalation_left_by_another_test(migrated: Any) -> None:
    """The session's tests share the schema: an escalation another test left awaiting
    triage would be handed over to this test's on-call clinicians (the on-call watch alerts
    each shift that begins before a triage), so each test starts with none open."""
    settings = await migrated(DEFINITION)
    conn = await asyncpg.connect(
        db.service_dsn(settings), server_settings={"search_path": settings.db_schema}
    )
    try:
        await conn.execute(
            "UPDATE escalations SET triaged_at = now(), envelope = NULL WHERE triaged_at IS NULL"
        )
    finally:
        await conn.close()
