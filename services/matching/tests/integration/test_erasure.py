"""Erasure in matching (real Postgres, real broker): the intake's free text, city and
preferred times go at once; the screening, the matches and the audit log stay as the
clinical record; the answer names both and the erasure is audited. The export part before
it holds the free text and is the client's alone."""

from __future__ import annotations

import uuid
from typing import Any

import prometheus_client

from chassis.testing.kafka import TopicProbe
from contracts import REGISTRY
from contracts.events import MatchingRightsRequestHandled, RightsRequested
from matching.service import rights


async def test_erasure_empties_the_free_text_and_keeps_the_screening(matching_service) -> None:
    async with matching_service() as m:
        client = uuid.uuid4()
        intake_id = await m.submitted(client, city="Umeå")
        topic = m.settings.topic(REGISTRY.topic(MatchingRightsRequestHandled))

        def answered(probe: TopicProbe, request: RightsRequested) -> list[Any]:
            return [
                e.payload
                for e in probe.envelopes("MatchingRightsRequestHandled")
                if e.payload.request_id == request.request_id
            ]

        async with TopicProbe(m.bootstrap, [topic]) as probe:
            export = RightsRequested(request_id=uuid.uuid4(), subject_id=client, kind="export")
            await m.publish(export)
            await probe.wait_for(lambda p: len(answered(p, export)) == 1, timeout=30)
            url = f"/me/exports/{export.request_id}"
            part = await m.http.get(url, headers=m.headers(client))
            assert part.status_code == 200, part.text
            assert part.json()["data"]["intakes"][0]["free_text"].startswith("Min mamma")
            stranger = await m.http.get(url, headers=m.headers(uuid.uuid4()))
            assert stranger.status_code == 404

            erasure = RightsRequested(request_id=uuid.uuid4(), subject_id=client, kind="erasure")
            await m.publish(erasure)
            await probe.wait_for(lambda p: len(answered(p, erasure)) == 1, timeout=30)
            answer = answered(probe, erasure)[0]

        # The export made before the erasure held the free text: it is gone with it.
        gone = await m.http.get(url, headers=m.headers(client))
        assert gone.status_code == 404
        assert (
            await m.pool.fetchval("SELECT count(*) FROM export_parts WHERE subject_id = $1", client)
            == 0
        )
        assert set(answer.erased) == {
            "intake_free_text",
            "intake_city",
            "intake_time_windows",
            "intake_meeting_preference",
        }
        assert {"intake_screening", "matches", "triage", "audit_log"} <= set(answer.kept)
        row = await m.pool.fetchrow(
            "SELECT free_text, city, time_windows, phq9_total, erased_at FROM intakes"
            " WHERE intake_id = $1",
            intake_id,
        )
        assert row["free_text"] is None and row["city"] is None
        assert row["time_windows"] in ([], "[]")
        assert row["phq9_total"] == 8 and row["erased_at"] is not None
        audited = await m.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE subject_id = $1 AND action = 'erasure'"
            " AND resource_id = $2",
            client,
            str(erasure.request_id),
        )
        assert audited == 1
        # The client still sees their intake and its screening, without the free text.
        view = await m.view(intake_id, client)
        assert view["answers"]["free_text"] is None
        assert view["screening"]["phq9_total"] == 8


async def test_a_waiting_in_person_intake_is_matched_by_video_once_its_preferences_are_erased(
    matching_service,
) -> None:
    """The city goes with the erasure, and the wish to meet in person with it (there is no
    city left to meet in): the intake waiting for somebody in Umeå is read as stored, and
    the next waitlist pass matches it as with no preferences given, by video."""
    async with matching_service() as m:
        client = uuid.uuid4()
        intake_id = await m.submitted(client, preferred_mode="in_person", city="Umeå")
        await m.wait_for("IntakeWaitlisted", intake_id)
        erasure = RightsRequested(request_id=uuid.uuid4(), subject_id=client, kind="erasure")
        async with m.pool.acquire() as conn, conn.transaction():
            await rights.handle_rights_request(conn, erasure)

        view = await m.view(intake_id, client)
        assert (view["answers"]["preferred_mode"], view["answers"]["city"]) == ("either", None)
        before = passed_over()
        await m.publish(m.therapist(modes=["video"], city="Malmö"))
        matched = await m.wait_for("TherapistMatched", intake_id)
        assert matched.client_id == client and matched.mode == "video"
        assert passed_over() == before


def passed_over() -> float:
    return (
        prometheus_client.REGISTRY.get_sample_value("samtal_waitlist_intakes_passed_over_total")
        or 0.0
    )
