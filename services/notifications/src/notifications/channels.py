"""The outside channels: e-mail over SMTP (aiosmtplib) and SMS through an HTTP provider.

Each send either returns (sent) or raises SendFailed, saying whether trying again
could help (`permanent=False`: the provider is down, busy or timed out) or not
(`permanent=True`: the provider refused this address or message for good).
Error texts never hold the address: they are shown to operators.
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from typing import TYPE_CHECKING

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


def compose_email(
    *,
    sender: str,
    to: str,
    subject: str,
    body: str,
    language: str,
    message_id: str,
    attachment: tuple[str, str, bytes] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    # Stable per delivery: a resend after a crash (at-least-once) has the same id, so
    # mail programs can show it once.
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    if attachment is not None:
        filename, content_type, content = attachment
        mime, *params = (part.strip() for part in content_type.split(";"))
        maintype, subtype = mime.split("/", 1)
        extra = dict(p.split("=", 1) for p in params if "=" in p and not p.startswith("charset"))
        msg.add_attachment(
            content, maintype=maintype, subtype=subtype, filename=filename, params=extra
        )
    # After the attachment: making the message multipart moves Content-* headers inward.
    msg["Content-Language"] = language
    return msg


class EmailChannel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        domain = email.utils.parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "samtal"
        self.message_domain = domain

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
            await aiosmtplib.send(
                msg,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_tls,
                timeout=s.smtp_timeout_s,
            )
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
