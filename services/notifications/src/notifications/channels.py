"""The outside channels: e-mail over SMTP (aiosmtplib) and SMS through an HTTP provider.

Each send either returns (sent) or raises SendFailed, saying whether trying again
could help (`permanent=False`: the provider is down, busy or timed out) or not
(`permanent=True`: the provider refused this address or message for good).
Error texts never hold the address: they are shown to operators.

Both keep their connections open across messages: SMTP connections in a small pool of
their own (a new connection costs a TCP and SMTP handshake, and TLS, per message), SMS
through one pooled HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import time
from collections.abc import AsyncIterator
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from email.policy import Compat32
from typing import TYPE_CHECKING, Any

import aiosmtplib
import httpx

if TYPE_CHECKING:
    from notifications.settings import Settings


class SendFailed(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def _scrub(text: str, address: str) -> str:
    return text.replace(address, "<recipient>")


class _Plain(Compat32):
    """The classic policy, writing a short ASCII header as it is instead of folding it
    through a Header object (which cost as much as the rest of a send)."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        # Values come ASCII already (RFC 2047 words, folded by _header): written as they
        # are; lines may be up to 998 characters (RFC 5322), folding at 78 is a courtesy.
        if isinstance(value, str) and value.isascii():
            lines = f"{name}: {value}".split("\n")
            if all(len(line) <= 998 for line in lines):
                return self.linesep.join(lines) + self.linesep
        # Not in typeshed's stubs; CPython's policies all define it.
        folded: str = super()._fold(name, value, sanitize)  # type: ignore[misc]
        return folded


_PLAIN = _Plain(linesep="\r\n")


@functools.lru_cache(maxsize=1024)
def _header(value: str) -> str:
    """A header value as it travels: non-ASCII text as RFC 2047 encoded words.

    Cached: the sender and most subjects repeat message after message, and encoding
    them was about a tenth of a send's CPU."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def compose_email(
    *,
    sender: str,
    to: str,
    subject: str,
    body: str,
    language: str,
    message_id: str,
    attachment: tuple[str, str, bytes] | None = None,
) -> Message:
    """The e-mail. Plain messages (nearly all) are built with the classic API, which
    writes headers as given: the modern one parses every header it is given, and that
    was most of the CPU a send cost."""
    if attachment is None:
        msg: Message = MIMEText(body, "plain", "utf-8", policy=_PLAIN)
    else:
        rich = EmailMessage()
        rich.set_content(body)
        filename, content_type, content = attachment
        mime, *params = (part.strip() for part in content_type.split(";"))
        maintype, subtype = mime.split("/", 1)
        extra = dict(p.split("=", 1) for p in params if "=" in p and not p.startswith("charset"))
        rich.add_attachment(
            content, maintype=maintype, subtype=subtype, filename=filename, params=extra
        )
        msg = rich
    msg["From"] = _header(sender)
    msg["To"] = to
    msg["Subject"] = _header(subject)
    msg["Date"] = email.utils.formatdate(usegmt=True)
    # Stable per delivery: a resend after a crash (at-least-once) has the same id, so
    # mail programs can show it once.
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    # After the attachment: making the message multipart moves Content-* headers inward.
    msg["Content-Language"] = language
    return msg


class SmtpConnections:
    """Open connections to the SMTP relay, reused across messages; at most `size` at once.

    A connection that failed (disconnected, timed out) is closed and not reused; one idle
    longer than `smtp_idle_s` is replaced, before the relay drops it on its side.
    """

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self.slots = asyncio.Semaphore(size)
        self.idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (connection, idle since)
        self.opened = 0  # connections opened so far (for tests and the benchmark)

    async def _open(self) -> aiosmtplib.SMTP:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_user,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_tls,
            timeout=s.smtp_timeout_s,
        )
        await smtp.connect()
        self.opened += 1
        return smtp

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[tuple[aiosmtplib.SMTP, bool]]:
        """(an open connection, whether it was used before); back to the pool after a
        send that the server answered (accepted or refused), closed after any other error."""
        async with self.slots:
            smtp, reused = None, False
            while self.idle and smtp is None:
                candidate, since = self.idle.pop()
                if time.monotonic() - since < self.settings.smtp_idle_s and candidate.is_connected:
                    smtp, reused = candidate, True
                else:
                    await _close(candidate)
            if smtp is None:
                smtp = await self._open()
            kept = False
            try:
                yield smtp, reused
                kept = smtp.is_connected
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
                kept = smtp.is_connected  # answered (and reset): the session goes on
                raise
            finally:
                if kept:
                    self.idle.append((smtp, time.monotonic()))
                else:
                    smtp.close()  # broken or abandoned: no goodbye

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for smtp, _ in idle:
            await _close(smtp)


async def _close(smtp: aiosmtplib.SMTP) -> None:
    if smtp.is_connected:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(smtp.quit(), 2)
    smtp.close()


class EmailChannel:
    def __init__(self, settings: Settings, connections: int | None = None) -> None:
        self.settings = settings
        self.envelope_from = email.utils.parseaddr(settings.smtp_from)[1]
        self.message_domain = self.envelope_from.rpartition("@")[2] or "samtal"
        self.connections = SmtpConnections(settings, connections or settings.send_connections)

    def message_id(self, delivery_id: int) -> str:
        return f"<delivery-{delivery_id}@{self.message_domain}>"

    async def send(
        self,
        delivery_id: int,
        to: str,
        subject: str,
        body: str,
        language: str,
        attachment: tuple[str, str, bytes] | None,
    ) -> None:
        s = self.settings
        msg = compose_email(
            sender=s.smtp_from,
            to=to,
            subject=subject,
            body=body,
            language=language,
            message_id=self.message_id(delivery_id),
            attachment=attachment,
        )
        try:
            await self._send(to, msg)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise SendFailed(
                _scrub(f"SMTP refused the recipient: {exc}", to),
                permanent=all(code >= 500 for code in codes),
            ) from exc
        except (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPSenderRefused) as exc:
            # Our own configuration is wrong: every message fails alike; keep trying.
            raise SendFailed(_scrub(f"SMTP: {exc}", to), permanent=False) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise SendFailed(
                _scrub(f"SMTP answered {exc.code}: {exc.message}", to), permanent=exc.code >= 500
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailed(
                _scrub(f"SMTP server unreachable: {type(exc).__name__}: {exc}", to),
                permanent=False,
            ) from exc

    async def _send(self, to: str, msg: Message) -> None:
        # The envelope as we know it, and the message as bytes: aiosmtplib's send_message
        # would parse the headers again to find them.
        content = msg.as_bytes()
        async with self.connections.connection() as (smtp, reused):
            try:
                await smtp.sendmail(self.envelope_from, [to], content)
                return
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The relay closed a kept connection before this message got an answer
                # (idle timeout, restart): once more on a new connection.
        async with self.connections.connection() as (smtp, _):
            await smtp.sendmail(self.envelope_from, [to], content)

    async def close(self) -> None:
        await self.connections.close()


# The provider's answers worth another try: timeout, rate limit, our credential (a
# configuration fix), and its own errors. Any other 4xx refuses this message for good.
_RETRY_STATUSES = frozenset({401, 403, 408, 425, 429})


class SmsChannel:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    @property
    def available(self) -> bool:
        return self.settings.sms_url is not None

    async def send(self, delivery_id: int, to: str, text: str) -> None:
        s = self.settings
        if s.sms_url is None:
            raise SendFailed("no SMS provider is configured", permanent=True)
        headers = {"Idempotency-Key": f"delivery-{delivery_id}"}
        if s.sms_token is not None:
            headers["Authorization"] = f"Bearer {s.sms_token.get_secret_value()}"
        try:
            response = await self.client.post(
                s.sms_url, json={"to": to, "text": text}, headers=headers, timeout=s.sms_timeout_s
            )
        except httpx.HTTPError as exc:
            raise SendFailed(
                _scrub(f"SMS provider unreachable: {type(exc).__name__}: {exc}", to),
                permanent=False,
            ) from exc
        if response.is_success:
            return
        status = response.status_code
        raise SendFailed(
            _scrub(f"SMS provider answered {status}: {response.text[:200]}", to),
            permanent=400 <= status < 500 and status not in _RETRY_STATUSES,
        )
