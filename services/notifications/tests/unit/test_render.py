from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
import pytest

from notifications.domain.plan import plan_messages, plan_rights_notice
from notifications.domain.render import (
    SMS_MAX_CHARS,
    NotRendered,
    UnknownTemplate,
    render,
    render_in_any_language,
    template_names,
)
from notifications.domain.words import format_short, format_when, reason_words

# GSM 03.38 basic character set (one SMS segment holds 160 of these).
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

EXPECTED_TEMPLATES = {
    "intake_received",
    "crisis_information",
    "crisis_alert",
    "intake_triaged",
    "therapist_matched",
    "new_client",
    "intake_waitlisted",
    "match_approved",
    "session_booked",
    "session_reminder",
    "session_cancelled",
    "session_rescheduled",
    "course_completed",
    "review_invitation",
    "followup_questionnaire",
    "course_ended",
}
# Planned when a rights request completes, not from one event (plan_rights_notice).
RIGHTS_TEMPLATES = {"rights_export_ready", "rights_erasure_done"}


def all_planned(samples: Any) -> list[Any]:
    return [
        m for e in samples.every_event() for m in plan_messages(samples.wrap(e), samples.roster)
    ]


def test_there_is_a_template_for_every_planned_message(samples: Any) -> None:
    assert set(template_names()) == EXPECTED_TEMPLATES | RIGHTS_TEMPLATES
    assert {m.template for m in all_planned(samples)} == EXPECTED_TEMPLATES


@pytest.mark.parametrize("language", ["sv", "en"])
def test_the_rights_notices_render_what_was_erased_and_kept(language: str) -> None:
    answers = {
        "matching": {"erased": ["intake_free_text"], "kept": ["intake_screening", "audit_log"]},
        "booking": {"erased": [], "kept": ["phq9_totals"]},
    }
    erasure = plan_rights_notice(uuid.uuid4(), uuid.uuid4(), "client", "erasure", answers)
    out = render(erasure.template, language, erasure.context)  # type: ignore[arg-type]
    words = {
        "sv": ("fritexten", "PHQ-9-summor", "tio år"),
        "en": ("free text", "PHQ-9 totals", "ten years"),
    }
    assert all(w in out.body for w in words[language]), out.body
    assert len(out.sms) <= SMS_MAX_CHARS and set(out.sms) <= GSM7
    export = plan_rights_notice(uuid.uuid4(), uuid.uuid4(), "client", "export", answers)
    out = render(export.template, language, export.context)  # type: ignore[arg-type]
    assert "matching" in out.body and "booking" in out.body
    assert len(out.sms) <= SMS_MAX_CHARS and set(out.sms) <= GSM7


@pytest.mark.parametrize("language", ["sv", "en"])
def test_every_planned_message_renders(samples: Any, language: str) -> None:
    for m in all_planned(samples):
        out = render(m.template, language, m.context)  # type: ignore[arg-type]
        where = (m.template, m.recipient_role, language)
        assert out.subject and "\n" not in out.subject, where
        assert len(out.subject) <= 120, where
        assert out.body.strip(), where
        assert "\n\n\n" not in out.body, where
        assert out.sms and len(out.sms) <= SMS_MAX_CHARS, (where, len(out.sms))
        assert set(out.sms) <= GSM7, (where, set(out.sms) - GSM7)
        assert "http" not in out.sms, where
        assert "{" not in out.body + out.subject + out.sms, where


def test_swedish_and_english_differ(samples: Any) -> None:
    m = plan_messages(samples.wrap(samples.session_booked()), samples.roster)[0]
    assert render(m.template, "sv", m.context).body != render(m.template, "en", m.context).body


def test_crisis_text_starts_with_112_and_the_emergency_department(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.intake_escalated()), samples.roster)
    to_client = next(m for m in messages if m.recipient_role == "client")
    sv = render(to_client.template, "sv", to_client.context)
    first_line = sv.body.splitlines()[0]
    assert "ring 112 eller åk till närmaste akutmottagning" in first_line
    assert "1177" in sv.body
    assert "112" in sv.subject and "112" in sv.sms
    en = render(to_client.template, "en", to_client.context)
    assert "call 112 or go to the nearest emergency department" in en.body.splitlines()[0]
    assert "1177" in en.body and "112" in en.sms


def test_clinician_alert_names_the_intake_and_is_marked_urgent(samples: Any) -> None:
    messages = plan_messages(samples.wrap(samples.intake_escalated()), samples.roster)
    alert = next(m for m in messages if m.recipient_role == "clinician")
    sv = render(alert.template, "sv", alert.context)
    assert sv.subject.startswith("BRÅDSKANDE")
    assert str(samples.intake_id) in sv.body
    assert render(alert.template, "en", alert.context).subject.startswith("URGENT")


def test_friendly_local_time() -> None:
    tuesday = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 14:00 in Stockholm (CET)
    assert format_when(tuesday, "sv") == "tisdag 3 mars kl. 14:00"
    assert format_when(tuesday, "en") == "Tuesday 3 March at 14:00"
    assert format_when(tuesday.isoformat(), "sv") == "tisdag 3 mars kl. 14:00"
    assert format_short(tuesday, "sv") == "tis 3 mars 14:00"
    assert format_short(tuesday, "en") == "Tue 3 Mar 14:00"
    assert format_when(tuesday, "en", "Europe/London") == "Tuesday 3 March at 13:00"


def test_local_time_across_the_spring_dst_change(samples: Any) -> None:
    # Same 10:00 UTC: 11:00 on Friday (CET), 12:00 on Monday (CEST, from 29 March).
    before = datetime(2026, 3, 27, 10, 0, tzinfo=UTC)
    after = before + timedelta(days=3)
    for start, sv_when, en_when in [
        (before, "fredag 27 mars kl. 11:00", "Friday 27 March at 11:00"),
        (after, "måndag 30 mars kl. 12:00", "Monday 30 March at 12:00"),
    ]:
        env = samples.wrap(samples.session_booked(start), at=datetime(2026, 3, 20, tzinfo=UTC))
        m = plan_messages(env, samples.roster)[0]
        assert sv_when in render(m.template, "sv", m.context).subject
        assert en_when in render(m.template, "en", m.context).body


def test_local_time_across_the_autumn_dst_change() -> None:
    # Clocks go back on 25 October 2026: 12:00 UTC is 14:00 before, 13:00 after.
    assert format_when(datetime(2026, 10, 24, 12, 0, tzinfo=UTC), "sv").endswith("kl. 14:00")
    assert format_when(datetime(2026, 10, 26, 12, 0, tzinfo=UTC), "sv").endswith("kl. 13:00")


def test_recipient_time_zone_is_honoured(samples: Any) -> None:
    m = plan_messages(samples.wrap(samples.session_booked()), samples.roster)[0]
    stockholm = render(m.template, "en", m.context)
    new_york = render(m.template, "en", m.context, time_zone="America/New_York")
    assert stockholm.subject != new_york.subject


def test_match_reasons_in_words(samples: Any) -> None:
    m = plan_messages(samples.wrap(samples.therapist_matched()), samples.roster)[0]
    sv = render(m.template, "sv", m.context).body
    assert "talar arabiska" in sv
    assert "arbetar med sorg och förlust" in sv
    assert "första lediga tid tisdag 3 mars kl. 14:00" in sv
    assert "4,8 av 5" in sv
    assert "utanför dina önskade tider" in sv  # relaxed preference explained
    en = render(m.template, "en", m.context).body
    assert "speaks Arabic" in en
    assert "works with grief and loss" in en
    assert "first free time Tuesday 3 March at 14:00" in en
    assert "speaks_language" not in sv + en


def test_odd_reason_values_never_break_a_message() -> None:
    assert reason_words({"code": "first_free_time", "value": "soon"}, "sv") == (
        "har en ledig tid snart"
    )
    assert reason_words({"code": "speaks_language", "value": "xx"}, "en") == "speaks xx"
    assert reason_words({"code": "well_rated", "value": None}, "en") == "is well rated by clients"
    assert reason_words({"code": "brand_new_code"}, "sv") == "passar dina önskemål"


def test_late_cancellation_counts_as_used_for_the_client(samples: Any) -> None:
    late = plan_messages(
        samples.wrap(samples.session_cancelled(late=True, counts_as_used=True)), samples.roster
    )
    free = plan_messages(samples.wrap(samples.session_cancelled()), samples.roster)
    late_client = next(m for m in late if m.recipient_role == "client")
    free_client = next(m for m in free if m.recipient_role == "client")
    assert (
        "räknas därför som en använd session"
        in render(late_client.template, "sv", late_client.context).body
    )
    assert (
        "räknas inte som en använd session"
        in render(free_client.template, "sv", free_client.context).body
    )


def test_session_texts_give_link_or_address(samples: Any) -> None:
    video = plan_messages(samples.wrap(samples.session_booked()), samples.roster)[0]
    assert (
        "https://meet.samtal.example/s/abc123" in render(video.template, "sv", video.context).body
    )
    moved = plan_messages(samples.wrap(samples.session_rescheduled()), samples.roster)[0]
    body = render(moved.template, "sv", moved.context).body
    assert "Storgatan 1, 111 22 Stockholm" in body
    assert "Tidigare tid:" in body


def test_outcome_in_the_course_summary(samples: Any) -> None:
    for outcome, words in [("response", "minst hälften"), ("remission", "inga eller få besvär")]:
        messages = plan_messages(samples.wrap(samples.course_completed(outcome)), samples.roster)
        summary = next(m for m in messages if m.purpose == "course_summary")
        out = render(summary.template, "sv", summary.context)
        assert words in out.body
        assert words not in out.subject + out.sms  # health facts stay out of lock screens


def test_a_missing_context_key_is_an_error(samples: Any) -> None:
    m = plan_messages(samples.wrap(samples.session_booked()), samples.roster)[0]
    context = dict(m.context)
    del context["starts_at"]
    with pytest.raises(jinja2.UndefinedError):
        render(m.template, "sv", context)


def test_unknown_template_or_language_is_refused() -> None:
    with pytest.raises(UnknownTemplate):
        render("no_such_message", "sv", {})
    with pytest.raises(UnknownTemplate):
        render("intake_received", "de", {})  # type: ignore[arg-type]


def test_a_message_a_language_cannot_render_is_written_in_the_next(samples: Any) -> None:
    m = plan_messages(samples.wrap(samples.session_booked()), samples.roster)[0]

    def swedish_broken(template: str, language: str, context: Any, **kw: Any) -> Any:
        if language == "sv":
            raise jinja2.UndefinedError("'weekday' is undefined")  # a bug in one file
        return render(template, language, context, **kw)  # type: ignore[arg-type]

    written_in, out, failed = render_in_any_language(
        m.template, "sv", m.context, render_one=swedish_broken
    )
    assert written_in == "en"
    assert out == render(m.template, "en", m.context)
    assert [(language, type(exc)) for language, exc in failed] == [("sv", jinja2.UndefinedError)]
    # The reader's own language first, whenever it renders: nothing failed.
    assert render_in_any_language(m.template, "sv", m.context)[0::2] == ("sv", [])
    assert render_in_any_language(m.template, "en", m.context)[0::2] == ("en", [])


def test_a_message_no_language_can_render_says_why_for_each(samples: Any) -> None:
    m = plan_messages(samples.wrap(samples.session_booked()), samples.roster)[0]
    # Not only the template's own errors: a filter given what it cannot show fails too.
    context = {**m.context, "starts_at": "soon"}
    with pytest.raises(ValueError):
        render(m.template, "sv", context)
    with pytest.raises(NotRendered) as caught:
        render_in_any_language(m.template, "en", context)
    assert [language for language, _ in caught.value.tried] == ["en", "sv"]
    assert all(isinstance(exc, ValueError) for _, exc in caught.value.tried)
    assert "'session_booked' renders in no language" in str(caught.value)
    with pytest.raises(NotRendered):
        render_in_any_language("no_such_message", "sv", {})
