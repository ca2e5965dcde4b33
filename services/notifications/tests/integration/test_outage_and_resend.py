"""Provider outages lose nothing and catch up; what fails for good is kept, listed for
operators and can be re-sent. Real SMTP server, real HTTP SMS provider, one worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from chassis import audit, db
from chassis.app import build
from chassis.auth import mint
from chassis.testing.events import a_session_booked
from chassis.testing.kafka import publish
from contracts import Envelope
from contracts.events import IntakeEscalated, IntakeSubmitted, IntakeWaitlisted
from notifications import store
from notifications.app import DEFINITION
from notifications.domain.plan import plan


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


async def test_a_message_no_template_can_render_is_kept_aside_and_rendered_again_once_fixed(
    migrated, serve, jwt_keys, mail_server, channel_settings, eventually
) -> None:
    """A template bug (here: a value its filter cannot show, in every language) must not
    hold back the messages behind it: the message is set aside as failed and counted,
    operators list it, and once fixed render it again, and it goes out."""
    settings = await migrated(DEFINITION, **channel_settings, on_call_clinicians=[])
    pool = await db.create_pool(settings)
    tag = uuid.uuid4().hex[:8]
    frank, frank_mail = uuid.uuid4(), f"frank-{tag}@example.se"
    george, george_mail = uuid.uuid4(), f"george-{tag}@example.se"
    admin = auth(jwt_keys, uuid.uuid4(), "admin")
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    booking = Envelope.wrap(a_session_booked(frank, starts_at))
    planned = plan(booking, None)
    broken = planned.model_copy(
        update={
            "messages": [
                m.model_copy(update={"context": {**m.context, "starts_at": "soon"}})
                if m.template == "session_booked"
                else m
                for m in planned.messages
            ]
        }
    )
    intake = Envelope.wrap(submitted(george))

    def failures(language: str) -> float:
        labels = {"template": "session_booked", "language": language}
        return REGISTRY.get_sample_value("samtal_notifications_render_failures_total", labels) or 0

    before = failures("sv"), failures("en")
    async with (
        serve(build(DEFINITION, settings, "api")) as http,
        serve(build(DEFINITION, settings, "worker")),
    ):
        for person, mail in [(frank, frank_mail), (george, george_mail)]:
            r = await http.put(
                "/contacts/me", headers=auth(jwt_keys, person, "client"), json={"email": mail}
            )
            assert r.status_code == 200, r.text
        # Both due at once, in one commit: the sender takes them in the same round.
        async with pool.acquire() as conn, conn.transaction():
            await store.save_plan(conn, booking, broken)
            await store.save_plan(conn, intake, plan(intake, None))

        async def franks() -> list[dict[str, Any]]:
            r = await http.get("/messages/failed", headers=admin)
            assert r.status_code == 200, r.text
            return [m for m in r.json() if m["recipient_id"] == str(frank)]

        await eventually(lambda: len(mail_server.to(george_mail)) == 1, what="george's message")
        await eventually(lambda: _count(franks(), 1), what="frank's message set aside")
        [failed] = await franks()
        assert (failed["kind"], failed["event_type"], failed["urgent"]) == (
            "session_booked",
            "SessionBooked",
            False,
        )
        assert "ValueError" in failed["error"]
        assert mail_server.to(frank_mail) == []
        assert (failures("sv"), failures("en")) >= (before[0] + 1, before[1] + 1)
        async with pool.acquire() as conn:
            trail = await audit.for_subject(conn, frank)
        assert ("read", "failed_messages") in [(a["action"], a["resource"]) for a in trail]

        # Only operators look or render again; what is not there, or not failed, says so.
        as_frank = auth(jwt_keys, frank, "client")
        again = f"/messages/{failed['id']}/render-again"
        assert (await http.get("/messages/failed", headers=as_frank)).status_code == 403
        assert (await http.post(again, headers=as_frank)).status_code == 403
        r = await http.post(f"/messages/{uuid.uuid4()}/render-again", headers=admin)
        assert r.status_code == 404
        r = await http.post("/messages/not-a-message/render-again", headers=admin)
        assert r.status_code == 422 and "message_id" in r.text

        # The fix is deployed (here: the value made right), and the operator renders it again.
        await pool.execute(
            "UPDATE messages SET context = jsonb_set(context, '{starts_at}', to_jsonb($2::text))"
            " WHERE id = $1",
            uuid.UUID(failed["id"]),
            starts_at.isoformat(),
        )
        r = await http.post(again, headers=admin)
        assert r.status_code == 202, r.text
        assert r.json() == {"id": failed["id"], "state": "scheduled"}
        await eventually(lambda: len(mail_server.to(frank_mail)) == 1, what="frank's message")
        assert mail_server.to(frank_mail)[0].subject.startswith("Bokad: session 1")
        assert await franks() == []
        r = await http.post(again, headers=admin)
        assert r.status_code == 409 and r.json()["code"] == "not_failed"
    await pool.close()
