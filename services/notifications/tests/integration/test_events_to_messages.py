"""Events on the real broker become messages at a real SMTP server, a real HTTP SMS
provider and the in-app inbox: right people, right language, once, with calendars,
reminders and crisis alerts. One worker for the whole journey (a group join is ~5 s)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

from chassis import db
from chassis.app import build, worker_pool_floor
from chassis.auth import mint
from chassis.testing.events import a_session_booked
from chassis.testing.kafka import publish
from contracts import Envelope
from contracts.events import (
    CourseCompleted,
    CourseEnded,
    IntakeEscalated,
    IntakeSubmitted,
    IntakeTriaged,
    IntakeWaitlisted,
    MatchApproved,
    SessionCancelled,
    SessionRescheduled,
    TherapistMatched,
)
from notifications.app import DEFINITION
from notifications.domain.plan import session_reminder_key

SMS_TOKEN = "test-sms-credential"


def auth(jwt_keys: Any, person: uuid.UUID, role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(jwt_keys[0], person, role)}"}  # type: ignore[arg-type]


class People:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.ann = uuid.uuid4()  # client, English, e-mail and SMS
        self.ann_mail = f"ann-{tag}@example.se"
        self.ann_phone = "+46701234567"
        self.tove = uuid.uuid4()  # therapist, Swedish, e-mail only
        self.tove_mail = f"tove-{tag}@example.se"
        self.cia = uuid.uuid4()  # on-call clinician, Swedish, e-mail; phone with SMS off
        self.cia_mail = f"cia-{tag}@example.se"
        self.cia_phone = "+46707654321"
        self.carl = uuid.uuid4()  # on-call clinician who set no contacts: in-app only
        self.bea = uuid.uuid4()  # client who set no contacts: in-app only


def session(p: People, course: uuid.UUID, sid: uuid.UUID, number: int, start: datetime) -> Any:
    return a_session_booked(
        p.ann,
        start,
        session_id=sid,
        course_id=course,
        therapist_id=p.tove,
        number=number,
        ends_at=start + timedelta(minutes=50),
        meeting_url="https://meet.samtal.example/s/abc",
    )


async def test_events_become_the_right_messages_once(
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
    p = People()
    settings = await migrated(
        DEFINITION,
        **channel_settings,
        on_call_clinicians=[p.cia, p.carl],
        # Long poll: crisis speed below comes from the NOTIFY wake-up, not from polling.
        sender_poll_s=10,
        # The smallest pool a notifications worker may have: all of it works on it.
        db_pool_max=worker_pool_floor(DEFINITION),
    )
    pool = await db.create_pool(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    intake, intake2, match, course, course2 = (uuid.uuid4() for _ in range(5))
    s1, s2, s3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    s1_start = now + timedelta(days=3)
    s1_moved = now + timedelta(days=4)
    # Starts in an hour and a bit: its 1 h reminder comes due during the test.
    s3_start = now + timedelta(hours=1, seconds=8)

    def at(seconds: int) -> datetime:
        return now - timedelta(minutes=5) + timedelta(seconds=seconds)

    submitted = Envelope.wrap(
        IntakeSubmitted(
            intake_id=intake,
            client_id=p.ann,
            age_group="adults",
            method="IPT",
            problem_areas=["grief"],
            severity_band="moderate",
            risk_level="standard",
            requires_approval=False,
            preferred_mode="video",
        ),
        occurred_at=at(1),
    )
    booked = Envelope.wrap(session(p, course, s1, 1, s1_start), occurred_at=at(10))
    events: list[Any] = [
        submitted,
        Envelope.wrap(
            IntakeEscalated(intake_id=intake2, client_id=p.ann, severity_band="severe"),
            occurred_at=at(2),
        ),
        Envelope.wrap(
            IntakeTriaged(
                intake_id=intake2, client_id=p.ann, clinician_id=p.cia, decision="resume_matching"
            ),
            occurred_at=at(3),
        ),
        Envelope.wrap(
            TherapistMatched(
                match_id=match,
                intake_id=intake,
                client_id=p.ann,
                therapist_id=p.tove,
                method="IPT",
                age_group="adults",
                problem_areas=["grief"],
                severity_band="moderate",
                mode="video",
                score=80,
                requires_approval=True,
            ),
            occurred_at=at(4),
        ),
        Envelope.wrap(
            MatchApproved(
                match_id=match,
                intake_id=intake,
                client_id=p.ann,
                therapist_id=p.tove,
                clinician_id=p.cia,
            ),
            occurred_at=at(5),
        ),
        Envelope.wrap(
            IntakeWaitlisted(intake_id=uuid.uuid4(), client_id=p.bea, reasons=["no_candidate"]),
            occurred_at=at(6),
        ),
        booked,
        Envelope.wrap(session(p, course, s2, 2, now + timedelta(days=10)), occurred_at=at(11)),
        Envelope.wrap(session(p, course, s3, 3, s3_start), occurred_at=at(12)),
        Envelope.wrap(
            CourseCompleted(
                course_id=course,
                client_id=p.ann,
                therapist_id=p.tove,
                method="IPT",
                sessions_held=14,
                start_severity_band="moderate",
                final_severity_band="mild",
                outcome="response",
                completed_at=now,
            ),
            occurred_at=at(30),
        ),
        Envelope.wrap(
            CourseEnded(
                course_id=course2,
                client_id=p.ann,
                therapist_id=p.tove,
                reason="client_withdrew",
                ended_by="client",
                sessions_held=2,
            ),
            occurred_at=at(31),
        ),
    ]
    # Published once the bookings are handled (events of one session travel on
    # different topics; the out-of-order case is tested at store level).
    changes: list[Any] = [
        Envelope.wrap(
            SessionRescheduled(
                session_id=s1,
                course_id=course,
                client_id=p.ann,
                therapist_id=p.tove,
                previous_starts_at=s1_start,
                starts_at=s1_moved,
                ends_at=s1_moved + timedelta(minutes=50),
                time_zone="Europe/Stockholm",
                mode="video",
                meeting_url="https://meet.samtal.example/s/abc",
                rescheduled_by="therapist",
                late=False,
                counts_as_used=False,
                number=1,
            ),
            occurred_at=at(20),
        ),
        Envelope.wrap(
            SessionCancelled(
                session_id=s2,
                course_id=course,
                client_id=p.ann,
                therapist_id=p.tove,
                starts_at=now + timedelta(days=10),
                cancelled_by="client",
                late=False,
                counts_as_used=False,
                number=2,
            ),
            occurred_at=at(21),
        ),
    ]

    async with (
        serve(build(DEFINITION, settings, "api")) as http,
        serve(build(DEFINITION, settings, "worker")),
    ):
        for person, body in [
            (
                p.ann,
                {
                    "email": p.ann_mail,
                    "phone": "070-123 45 67",
                    "language": "en",
                    "channels": {"email": True, "sms": True},
                },
            ),
            (p.tove, {"email": p.tove_mail}),
            (p.cia, {"email": p.cia_mail, "phone": "0707654321", "channels": {"sms": False}}),
        ]:
            role = "therapist" if person == p.tove else "client"
            r = await http.put("/contacts/me", headers=auth(jwt_keys, person, role), json=body)
            assert r.status_code == 200, r.text

        await publish(kafka_bootstrap, topic_prefix, *events)
        # The broker delivers twice: nothing is sent twice.
        await publish(kafka_bootstrap, topic_prefix, submitted, booked)
        await eventually(
            lambda: sum(s.startswith("Booked") for s in mail_server.subjects(p.ann_mail)) == 3,
            what="the bookings",
        )
        await publish(kafka_bootstrap, topic_prefix, *changes)

        ann_expected = 14  # every event of hers, plus the 1 h reminder of session 3
        tove_expected = 9
        await eventually(
            lambda: (
                len(mail_server.to(p.ann_mail)) >= ann_expected
                and len(mail_server.to(p.tove_mail)) >= tove_expected
                and len(sms_provider.to(p.ann_phone)) >= ann_expected
            ),
            timeout=40,
            what="every e-mail and SMS",
        )
        await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive by now

        ann = mail_server.subjects(p.ann_mail)
        assert sorted(s.split(":")[0] if ":" in s else s for s in ann) == sorted(
            [
                "We have received your request",
                "Important",  # crisis information: call 112
                "We are continuing to find you a therapist",
                "We have found you a therapist",
                "You can now book your first session",
                "Booked",  # session 1
                "New time",  # session 1 moved
                "Booked",  # session 2
                "Cancelled",  # session 2
                "Booked",  # session 3
                "Reminder",  # session 3, in one hour
                "Your treatment is complete",
                "Would you like to leave a review?",
                "The course has ended",
            ]
        ), ann
        assert any(s.startswith("Important: call 112") for s in ann)
        assert any(s.startswith("Reminder: in one hour") for s in ann)

        tove = mail_server.subjects(p.tove_mail)
        assert sorted(s.split(":")[0] if ":" in s else s for s in tove) == sorted(
            [
                # Nothing at the proposal (it awaited approval): the approval is the news.
                "Ny klient",
                "Bokad",
                "Ny tid",
                "Bokad",
                "Avbokad",
                "Bokad",
                "Påminnelse",
                "Behandling avslutad",
                "Behandlingen är avslutad",
            ]
        ), tove

        # SMS: Ann chose SMS too, in English, with the provider's credential.
        texts = [s.text for s in sms_provider.to(p.ann_phone)]
        assert len(texts) == ann_expected
        assert all(t.startswith("Samtal") for t in texts)
        assert any("112" in t for t in texts)
        assert {s.authorization for s in sms_provider.received} == {f"Bearer {SMS_TOKEN}"}
        assert len({s.idempotency_key for s in sms_provider.to(p.ann_phone)}) == ann_expected

        # Crisis: the on-call clinician is alerted on every address (SMS although off).
        assert mail_server.subjects(p.cia_mail) == [
            "BRÅDSKANDE: förfrågan med hög risk väntar på triage"
        ]
        assert len(sms_provider.to(p.cia_phone)) == 1
        assert sms_provider.to(p.cia_phone)[0].text.startswith("Samtal BRÅDSKANDE")

        # The calendar attachment arrives and parses; the cancellation cancels the entry.
        s1_mail = next(
            m for m in mail_server.to(p.ann_mail) if m.subject.startswith("Booked: session 1")
        )
        (ics,) = s1_mail.attachments()
        assert ics.get_content_type() == "text/calendar"
        assert ics.get_filename() == "samtal-session.ics"
        cal = icalendar.Calendar.from_ical(ics.get_content())
        assert cal["METHOD"] == "REQUEST"
        vevent = cal.walk("VEVENT")[0]
        assert str(vevent["UID"]) == f"session-{s1}@samtal"
        assert vevent.decoded("DTSTART") == s1_start
        assert "https://meet.samtal.example/s/abc" in s1_mail.body
        cancel_mail = next(
            m for m in mail_server.to(p.tove_mail) if m.subject.startswith("Avbokad")
        )
        cancel_cal = icalendar.Calendar.from_ical(cancel_mail.attachments()[0].get_content())
        assert cancel_cal["METHOD"] == "CANCEL"
        assert str(cancel_cal.walk("VEVENT")[0]["UID"]) == f"session-{s2}@samtal"

        # Reminders: moved with the reschedule, dropped with the cancellation.
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT reminder_key, purpose, recipient_id, due_at, state FROM messages"
                " WHERE reminder_key = ANY($1::text[])",
                [session_reminder_key(course, s) for s in (s1, s2, s3)],
            )
            follow_up = await conn.fetch(
                "SELECT due_at FROM messages WHERE recipient_id = $1 AND state = 'scheduled'"
                " AND template = 'followup_questionnaire'",
                p.ann,
            )

        def reminders(sid: uuid.UUID, state: str) -> set[tuple[str, uuid.UUID, datetime]]:
            key = session_reminder_key(course, sid)
            return {
                (r["purpose"], r["recipient_id"], r["due_at"])
                for r in rows
                if r["reminder_key"] == key and r["state"] == state
            }

        before = {"reminder_24h": timedelta(hours=24), "reminder_1h": timedelta(hours=1)}
        assert reminders(s1, "scheduled") == {
            (purpose, who, s1_moved - ahead)
            for purpose, ahead in before.items()
            for who in (p.ann, p.tove)
        }
        assert {r[2] for r in reminders(s1, "dropped")} == {
            s1_start - timedelta(hours=24),
            s1_start - timedelta(hours=1),
        }
        assert len(reminders(s1, "dropped")) == 4
        assert reminders(s2, "scheduled") == set()
        assert len(reminders(s2, "dropped")) == 4
        assert {(r[0], r[1]) for r in reminders(s3, "delivered")} == {
            ("reminder_1h", p.ann),
            ("reminder_1h", p.tove),
        }
        assert [r["due_at"] for r in follow_up] == [now + timedelta(weeks=4)]

        # The in-app inbox: own messages only, newest first, unread count, mark read.
        as_ann = auth(jwt_keys, p.ann, "client")
        inbox = (await http.get("/inbox", headers=as_ann)).json()
        assert (inbox["total"], inbox["unread"]) == (ann_expected, ann_expected)
        received = [m["received_at"] for m in inbox["messages"]]
        assert received == sorted(received, reverse=True)
        crisis = next(m for m in inbox["messages"] if m["kind"] == "crisis_information")
        assert crisis["urgent"] is True and "112" in crisis["body"]
        r = await http.post(f"/inbox/{crisis['id']}/read", headers=as_ann)
        assert r.status_code == 200 and r.json()["read_at"]
        assert (await http.get("/inbox", headers=as_ann)).json()["unread"] == ann_expected - 1
        # Somebody else's message is not there for anyone else.
        as_tove = auth(jwt_keys, p.tove, "therapist")
        assert (await http.post(f"/inbox/{crisis['id']}/read", headers=as_tove)).status_code == 404
        assert (await http.post(f"/inbox/{uuid.uuid4()}/read", headers=as_ann)).status_code == 404
        tove_inbox = (await http.get("/inbox", headers=as_tove)).json()
        assert crisis["id"] not in {m["id"] for m in tove_inbox["messages"]}
        assert tove_inbox["total"] == tove_expected
        admin = auth(jwt_keys, uuid.uuid4(), "admin")
        assert (await http.get("/inbox", headers=admin)).status_code == 403

        # Without contacts: in-app only, in Swedish.
        bea = (await http.get("/inbox", headers=auth(jwt_keys, p.bea, "client"))).json()
        assert [(m["kind"], m["subject"]) for m in bea["messages"]] == [
            ("intake_waitlisted", "Du står i kö för en terapeut")
        ]
        carl = (await http.get("/inbox", headers=auth(jwt_keys, p.carl, "clinician"))).json()
        assert [(m["kind"], m["urgent"]) for m in carl["messages"]] == [("crisis_alert", True)]
        assert carl["messages"][0]["refs"]["client_id"] == str(p.ann)

        # Crisis fast path: with the consumers up, an escalation reaches the on-call
        # clinician within moments (the sender is woken, not polled: poll is 10 s).
        started = time.monotonic()
        await publish(
            kafka_bootstrap,
            topic_prefix,
            IntakeEscalated(intake_id=uuid.uuid4(), client_id=p.bea, severity_band="severe"),
        )
        await eventually(lambda: len(mail_server.to(p.cia_mail)) == 2, timeout=10, what="alert")
        assert time.monotonic() - started < 3.0
        assert len(mail_server.to(p.ann_mail)) == ann_expected  # still nothing twice
        assert len(mail_server.to(p.tove_mail)) == tove_expected
    await pool.close()
