"""Provider outages lose nothing and catch up; what fails for good is kept, listed for
operators and can be re-sent. Real SMTP server, real HTTP SMS provider, one worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from chassis import audit, db
from chassis.app import build
from chassis.auth import mint
from chassis.testing.kafka import publish
from contracts.events import IntakeEscalated, IntakeSubmitted, IntakeWaitlisted
from notifications.app import DEFINITION


def auth(jwt_keys: Any, person: uuid.UUID, role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(jwt_keys[0], person, role)}"}  # type: ignore[arg-type]


def submitted(client_id: uuid.UUID) -> IntakeSubmitted:
    return IntakeSubmitted(
        intake_id=uuid.uuid4(),
        client_id=client_id,
        age_group="adults",
        method="KBT",
        problem_areas=["anxiety"],
        severity_band="mild",
        risk_level="standard",
        requires_approval=False,
        preferred_mode="video",
    )


async def test_an_outage_loses_nothing_and_failures_can_be_resent(
    migrated,
    serve,
    jwt_keys,
    kafka_bootstrap,
    topic_prefix,
    mail_server,
    sms_provider,
    channel_settings,
    eventually,
) -> None:
    settings = await migrated(
        DEFINITION,
        **channel_settings,
        # No roster configured: an escalation still reaches the client.
        on_call_clinicians=[],
        retry_base_s=0.2,
        retry_max_s=0.5,
        retry_urgent_base_s=0.1,
        retry_urgent_max_s=0.3,
        retry_max_attempts=40,
    )
    pool = await db.create_pool(settings)
    tag = uuid.uuid4().hex[:8]
    dora, dora_mail, dora_phone = uuid.uuid4(), f"dora-{tag}@example.se", "+46701112233"
    eve, eve_mail, eve_phone = uuid.uuid4(), f"eve-{tag}@example.se", "+46704445566"
    admin = auth(jwt_keys, uuid.uuid4(), "admin")

    async with (
        serve(build(DEFINITION, settings, "api")) as http,
        serve(build(DEFINITION, settings, "worker")),
    ):
        for person, mail, phone in [(dora, dora_mail, dora_phone), (eve, eve_mail, eve_phone)]:
            r = await http.put(
                "/contacts/me",
                headers=auth(jwt_keys, person, "client"),
                json={"email": mail, "phone": phone, "channels": {"sms": True}},
            )
            assert r.status_code == 200, r.text

        # Both providers are down.
        mail_server.fail_with = "451 4.3.0 Try again later"
        sms_provider.status = 503
        await publish(
            kafka_bootstrap,
            topic_prefix,
            *[submitted(dora) for _ in range(4)],
            IntakeEscalated(intake_id=uuid.uuid4(), client_id=dora, severity_band="severe"),
        )
        # Every delivery has been tried and refused at least twice, nothing got through.
        await eventually(
            lambda: mail_server.attempts >= 10 and sms_provider.attempts >= 10,
            what="retries during the outage",
        )
        assert mail_server.to(dora_mail) == [] and sms_provider.to(dora_phone) == []

        # They come back: everything goes out, once.
        mail_server.fail_with = None
        sms_provider.status = 200
        await eventually(
            lambda: len(mail_server.to(dora_mail)) >= 5 and len(sms_provider.to(dora_phone)) >= 5,
            what="catching up",
        )
        await asyncio.sleep(1.0)
        assert len(mail_server.to(dora_mail)) == 5
        assert len(sms_provider.to(dora_phone)) == 5
        assert (
            sum(m.subject.startswith("Viktigt: ring 112") for m in mail_server.to(dora_mail)) == 1
        )
        rows = await pool.fetch(
            "SELECT d.state, d.attempts, d.last_error FROM deliveries d"
            " JOIN messages m ON m.id = d.message_id WHERE m.recipient_id = $1",
            dora,
        )
        assert len(rows) == 10
        assert {r["state"] for r in rows} == {"sent"}
        assert all(r["attempts"] >= 2 for r in rows)
        assert any("451" in r["last_error"] for r in rows)
        assert any("503" in r["last_error"] for r in rows)

        # Refused for good (no such mailbox; the provider rejects the number): kept as
        # failed at once, with the error, for operators.
        mail_server.unknown.add(eve_mail)
        sms_provider.refused.add(eve_phone)
        await publish(
            kafka_bootstrap,
            topic_prefix,
            IntakeWaitlisted(intake_id=uuid.uuid4(), client_id=eve, reasons=["no_candidate"]),
        )

        async def eves_failures() -> list[dict[str, Any]]:
            r = await http.get("/deliveries/failed", headers=admin)
            assert r.status_code == 200, r.text
            return [d for d in r.json() if d["recipient_id"] == str(eve)]

        await eventually(
            lambda: _count(eves_failures(), 2), what="failed deliveries listed for operators"
        )
        failed = {d["channel"]: d for d in await eves_failures()}
        assert set(failed) == {"email", "sms"}
        assert failed["email"]["attempts"] == 1 and "550" in failed["email"]["error"]
        assert failed["sms"]["attempts"] == 1 and "400" in failed["sms"]["error"]
        for d in failed.values():
            assert (d["event_type"], d["kind"], d["urgent"]) == (
                "IntakeWaitlisted",
                "intake_waitlisted",
                False,
            )
            # What and why, never the address.
            assert eve_mail not in d["error"] and eve_phone not in d["error"]
        # The operator's look at a client's messages is audited.
        async with pool.acquire() as conn:
            trail = await audit.for_subject(conn, eve)
        assert [(a["action"], a["resource"]) for a in trail][:1] == [("read", "failed_deliveries")]
        # Nobody else may look or re-send.
        as_eve = auth(jwt_keys, eve, "client")
        assert (await http.get("/deliveries/failed", headers=as_eve)).status_code == 403
        sms_id, email_id = failed["sms"]["id"], failed["email"]["id"]
        assert (await http.post(f"/deliveries/{sms_id}/resend", headers=as_eve)).status_code == 403
        assert (await http.post("/deliveries/999999999/resend", headers=admin)).status_code == 404

        # Fixed at the provider; the operator re-sends both.
        mail_server.unknown.clear()
        sms_provider.refused.clear()
        for delivery_id in (email_id, sms_id):
            r = await http.post(f"/deliveries/{delivery_id}/resend", headers=admin)
            assert r.status_code == 202, r.text
            assert r.json() == {"id": delivery_id, "state": "pending"}
        await eventually(
            lambda: len(mail_server.to(eve_mail)) == 1 and len(sms_provider.to(eve_phone)) == 1,
            what="re-sent messages",
        )
        assert mail_server.to(eve_mail)[0].subject == "Du står i kö för en terapeut"
        assert await eves_failures() == []
        r = await http.post(f"/deliveries/{email_id}/resend", headers=admin)
        assert r.status_code == 409 and r.json()["code"] == "not_failed"
        sent_at = await pool.fetchval("SELECT sent_at FROM deliveries WHERE id = $1", email_id)
        assert sent_at is not None and sent_at <= datetime.now(UTC)
    await pool.close()


async def _count(failures: Any, n: int) -> bool:
    return len(await failures) == n
