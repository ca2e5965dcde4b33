"""Notifications's settings (env: SAMTAL_NOTIFICATIONS_*), read by every module of the service."""

from __future__ import annotations

import uuid
from datetime import timedelta

from pydantic import Field, SecretStr, model_validator

from chassis.settings import ServiceSettings, service_config
from notifications.domain.contacts import OnCallRoster, OnCallShift
from notifications.domain.delivery import (
    BASE_DELAY,
    MAX_ATTEMPTS,
    MAX_DELAY,
    URGENT_BASE_DELAY,
    URGENT_MAX_ATTEMPTS,
    URGENT_MAX_DELAY,
    RetryPolicy,
)


class Settings(ServiceSettings):
    model_config = service_config("notifications")  # env: SAMTAL_NOTIFICATIONS_*
    service: str = "notifications"

    # Who is alerted when an intake is escalated: a JSON list of clinician ids,
    # e.g. SAMTAL_NOTIFICATIONS_ON_CALL_CLINICIANS='["…", "…"]'; optional shifts say who
    # is on call when (domain.contacts.OnCallRoster).
    on_call_clinicians: list[uuid.UUID] = Field(default_factory=list)
    on_call_shifts: list[OnCallShift] = Field(default_factory=list)

    # E-mail over SMTP. starttls None: use STARTTLS when the server offers it.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "Samtal <no-reply@samtal.se>"
    smtp_starttls: bool | None = None
    smtp_tls: bool = False  # implicit TLS (port 465)
    smtp_timeout_s: float = Field(default=20, gt=0)

    # SMS through an HTTP provider: POST {to, text} with a bearer credential.
    # Without a URL there is no SMS channel (e-mail and in-app only).
    sms_url: str | None = None
    sms_token: SecretStr | None = None
    sms_timeout_s: float = Field(default=10, gt=0)

    # Kept SMTP connections idle longer than this are replaced (relays drop idle ones).
    smtp_idle_s: float = Field(default=30, gt=0)

    # The sender: woken by NOTIFY and at the next due time; sender_poll_s is only the
    # longest it sleeps otherwise. How many messages/deliveries it takes from the database
    # at a time, how many sends it has under way at once (also its SMTP connections and
    # SMS provider connections), and how long a claim lasts unrenewed: a sender renews its
    # claims while it sends, so the lease only bounds how soon another sender takes over
    # the deliveries of one that died (an urgent message included: re-sent within about
    # this long).
    sender_poll_s: float = Field(default=5.0, gt=0)
    sender_batch_size: int = Field(default=100, ge=1, le=1000)
    sender_concurrency: int = Field(default=20, ge=1, le=200)
    # SMTP connections kept beyond `sender_concurrency` for urgent messages (a crisis is sent
    # at once instead of waiting for a busy sender); 0 puts urgent ones at the queue's head.
    sender_urgent_connections: int = Field(default=4, ge=0, le=50)
    sender_lease_s: float = Field(default=10, ge=1)

    # Retries of failed sends (domain.delivery): attempts and backoff, normal and urgent.
    retry_max_attempts: int = Field(default=MAX_ATTEMPTS, ge=1, le=50)
    retry_base_s: float = Field(default=BASE_DELAY.total_seconds(), ge=0)
    retry_max_s: float = Field(default=MAX_DELAY.total_seconds(), ge=0)
    retry_urgent_base_s: float = Field(default=URGENT_BASE_DELAY.total_seconds(), ge=0)
    retry_urgent_max_s: float = Field(default=URGENT_MAX_DELAY.total_seconds(), ge=0)
    retry_urgent_max_attempts: int = Field(default=URGENT_MAX_ATTEMPTS, ge=1, le=1000)

    # Where the other services' parts of a person's export are fetched when the person
    # fetches it as one document (`{service}` is replaced by each service's name): through
    # the gateway by default, with the person's own token (notifications.export_parts).
    export_parts_url: str = Field(
        default="http://127.0.0.1:8080/api/{service}", pattern=r"^https?://.*\{service\}"
    )
    export_parts_timeout_s: float = Field(default=15, gt=0)

    @model_validator(mode="after")
    def _roster_is_valid(self) -> Settings:
        self.on_call_roster  # noqa: B018 - a bad roster fails at start, not at a crisis
        return self

    @property
    def on_call_roster(self) -> OnCallRoster | None:
        if not self.on_call_clinicians:
            return None
        return OnCallRoster(clinician_ids=self.on_call_clinicians, shifts=self.on_call_shifts)

    @property
    def send_connections(self) -> int:
        """Connections to each channel: the senders' and those kept for urgent messages."""
        return self.sender_concurrency + self.sender_urgent_connections

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_delay=timedelta(seconds=self.retry_base_s),
            max_delay=timedelta(seconds=self.retry_max_s),
            urgent_base_delay=timedelta(seconds=self.retry_urgent_base_s),
            urgent_max_delay=timedelta(seconds=self.retry_urgent_max_s),
            urgent_max_attempts=self.retry_urgent_max_attempts,
        )
