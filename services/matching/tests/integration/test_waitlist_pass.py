"""A waitlist pass with the worker's index: only the intakes the index has a place for
open a transaction; the rest keep their place without one."""

from __future__ import annotations

import random
import string
import uuid

from chassis import db
from chassis.testing.events import a_profile
from matching import service, store
from matching.app import DEFINITION
from matching.domain.candidate_index import CandidateIndex
from matching.service.decisions import IndexedCandidates


def a_language() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=2))


async def test_a_pass_opens_a_transaction_only_for_an_intake_the_index_has_a_place_for(
    migrated_offline, monkeypatch
) -> None:
    settings = await migrated_offline(DEFINITION)
    pool = await db.create_pool(settings)
    spoken, unspoken = a_language(), a_language()
    therapist = uuid.uuid4()
    profile = a_profile(therapist, languages=[spoken])
    waiting = {}
    try:
        async with pool.acquire() as conn:
            await store.apply_profile(conn, profile)
            for language in [unspoken] * 20 + [spoken]:
                intake_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO intakes (intake_id, client_id, age, languages, preferred_mode,"
                    " problem_areas, phq9, consent_to_treatment, consent_to_health_data,"
                    " phq9_total, severity_band, risk_level, requires_approval, method,"
                    " age_group, status, waitlisted_at)"
                    " VALUES ($1, gen_random_uuid(), 34, $2, 'video', '{grief}',"
                    " '{1,1,1,1,1,1,1,1,0}', true, true, 8, 'mild', 'standard', false, 'IPT',"
                    " 'adults', 'waitlisted', now())",
                    intake_id,
                    [language],
                )
                waiting[intake_id] = language
            index = CandidateIndex(await store.candidates_of(conn, [therapist]))

        opened: list[uuid.UUID] = []
        to_match = store.intake_to_match

        async def counted(conn, intake_id):  # type: ignore[no-untyped-def]
            opened.append(intake_id)
            return await to_match(conn, intake_id)

        monkeypatch.setattr(store, "intake_to_match", counted)
        await service.retry_waitlist(pool, IndexedCandidates(index))

        fits = [i for i, language in waiting.items() if language == spoken]
        assert [i for i in opened if i in waiting] == fits  # not the twenty nobody can take
        status = await pool.fetch(
            "SELECT intake_id, status FROM intakes WHERE intake_id = ANY($1::uuid[])",
            list(waiting),
        )
        assert {r["intake_id"] for r in status if r["status"] == "matched"} == set(fits)
        assert sum(r["status"] == "waitlisted" for r in status) == 20
    finally:
        await pool.close()
