"""Scoped clinician access: the on-call clinicians and the claimant open escalated intakes;
anybody else only with a stated reason, audited, flagged and shown to the client; claims
keep two clinicians from working one intake unknowingly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

ESCALATED = {"phq9": [2, 2, 2, 2, 2, 2, 2, 2, 1]}  # item 9 > 0: high risk


async def test_on_call_and_claimant_open_it_others_only_with_a_reason(matching_service) -> None:
    on_call, off_duty, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    shifts = [
        {
            "clinician_id": str(on_call),
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=8)).isoformat(),
        },
        {
            "clinician_id": str(off_duty),
            "starts_at": (now + timedelta(hours=8)).isoformat(),
            "ends_at": (now + timedelta(hours=16)).isoformat(),
        },
    ]
    async with matching_service(
        worker=False,
        on_call_clinicians=[on_call, off_duty, other],
        on_call_shifts=shifts,
    ) as m:
        client = uuid.uuid4()
        intake_id = await m.submitted(client, **ESCALATED)
        url = f"/clinician/intakes/{intake_id}"

        # On call now: opens it, free text included.
        r = await m.http.get(url, headers=m.headers(on_call, "clinician"))
        assert r.status_code == 200, r.text
        assert r.json()["access"] == "on_call" and r.json()["answers"]["free_text"]

        # On the roster but not on shift now: nothing, and told how to get in.
        r = await m.http.get(url, headers=m.headers(off_duty, "clinician"))
        assert r.status_code == 403 and r.json()["code"] == "emergency_access_required"
        assert "free_text" not in r.text
        r = await m.http.post(
            f"{url}/triage",
            json={"decision": "refer_elsewhere"},
            headers=m.headers(off_duty, "clinician"),
        )
        assert r.status_code == 403
        r = await m.http.post(f"{url}/claim", headers=m.headers(off_duty, "clinician"))
        assert r.status_code == 403

        # Emergency access: 422 without a reason (or a blank one), naming the field.
        for body in ({}, {"reason": "   "}):
            r = await m.http.post(
                f"{url}/emergency-access", json=body, headers=m.headers(off_duty, "clinician")
            )
            assert r.status_code == 422 and r.json()["detail"].startswith("reason"), r.text
        reason = "Client phoned the clinic in distress; on-call line busy"
        r = await m.http.post(
            f"{url}/emergency-access",
            json={"reason": reason},
            headers=m.headers(off_duty, "clinician"),
        )
        assert r.status_code == 200 and r.json()["access"] == "emergency", r.text
        # The grant lasts: a later read is allowed, and still flagged.
        r = await m.http.get(url, headers=m.headers(off_duty, "clinician"))
        assert r.status_code == 200 and r.json()["access"] == "emergency"
        # A non-escalated intake is nobody's, reason or not.
        plain = await m.submitted(uuid.uuid4())
        r = await m.http.post(
            f"/clinician/intakes/{plain}/emergency-access",
            json={"reason": reason},
            headers=m.headers(off_duty, "clinician"),
        )
        assert r.status_code == 404

        # Claims: the on-call clinician claims; the other is told who has it.
        r = await m.http.post(f"{url}/claim", headers=m.headers(on_call, "clinician"))
        assert r.status_code == 200 and r.json()["claimed_by"] == str(on_call)
        again = await m.http.post(f"{url}/claim", headers=m.headers(on_call, "clinician"))
        assert again.json()["claimed_at"] == r.json()["claimed_at"]
        r = await m.http.post(f"{url}/claim", headers=m.headers(off_duty, "clinician"))
        assert r.status_code == 409 and r.json()["claimed_by"] == str(on_call)
        r = await m.http.post(
            f"{url}/triage",
            json={"decision": "refer_elsewhere"},
            headers=m.headers(off_duty, "clinician"),
        )
        assert r.status_code == 409 and r.json()["code"] == "claimed_by_another"
        queue = await m.http.get(
            "/clinician/queue", params={"limit": 500}, headers=m.headers(on_call, "clinician")
        )
        entry = next(e for e in queue.json() if e["intake_id"] == str(intake_id))
        assert entry["claimed_by"] == str(on_call)

        # Taking it over knowingly; then the claimant (not on call) may open and triage it.
        r = await m.http.post(
            f"{url}/claim", json={"take_over": True}, headers=m.headers(off_duty, "clinician")
        )
        assert r.status_code == 200 and r.json()["claimed_by"] == str(off_duty)
        r = await m.http.post(
            f"{url}/triage",
            json={"decision": "refer_elsewhere"},
            headers=m.headers(on_call, "clinician"),
        )
        assert r.status_code == 409
        r = await m.http.post(
            f"{url}/triage",
            json={"decision": "refer_elsewhere"},
            headers=m.headers(off_duty, "clinician"),
        )
        assert r.status_code == 200 and r.json()["status"] == "referred_elsewhere", r.text
        assert (
            await m.http.delete(f"{url}/claim", headers=m.headers(on_call, "clinician"))
        ).status_code == 404
        assert (
            await m.http.delete(f"{url}/claim", headers=m.headers(off_duty, "clinician"))
        ).status_code == 200

        # The client sees the emergency access, flagged, with its reason.
        log = (await m.http.get("/me/audit", headers=m.headers(client))).json()
        emergency = [e for e in log if e["emergency"]]
        assert {e["actor_id"] for e in emergency} == {str(off_duty)}
        assert emergency[0]["reason_code"] == "emergency_access"
        assert emergency[0]["reason"] == reason
        assert not any(e["emergency"] for e in log if e["actor_id"] == str(on_call))
        actions = {(e["actor_id"], e["action"]) for e in log}
        assert {(str(on_call), "claim"), (str(off_duty), "claim"), (str(off_duty), "triage")} <= (
            actions
        )


async def test_the_clinician_alerted_opens_and_triages_it_after_their_shift(
    matching_service,
) -> None:
    """Escalated while A was on call (notifications alerted A then), still awaiting triage
    after A's shift ended: A opens, claims and triages it without a reason, as does B, on
    call now; C, on call at neither time, still needs one."""
    alerted, now_on_call, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    shifts = [
        {"clinician_id": str(who), "starts_at": start.isoformat(), "ends_at": end.isoformat()}
        for who, start, end in (
            (alerted, now - timedelta(hours=3), now - timedelta(hours=1)),
            (now_on_call, now - timedelta(hours=1), now + timedelta(hours=8)),
            (later, now + timedelta(hours=8), now + timedelta(hours=16)),
        )
    ]
    async with matching_service(
        worker=False, on_call_clinicians=[alerted, now_on_call, later], on_call_shifts=shifts
    ) as m:
        intake_id = await m.submitted(uuid.uuid4(), **ESCALATED)
        await m.pool.execute(  # escalated two hours ago, in the middle of A's shift
            "UPDATE intakes SET submitted_at = $2 WHERE intake_id = $1",
            intake_id,
            now - timedelta(hours=2),
        )
        url = f"/clinician/intakes/{intake_id}"
        for who, access in ((alerted, "alerted"), (now_on_call, "on_call")):
            r = await m.http.get(url, headers=m.headers(who, "clinician"))
            assert r.status_code == 200 and r.json()["access"] == access, r.text
        r = await m.http.get(url, headers=m.headers(later, "clinician"))
        assert r.status_code == 403 and r.json()["code"] == "emergency_access_required"
        r = await m.http.post(f"{url}/claim", headers=m.headers(alerted, "clinician"))
        assert r.status_code == 200, r.text
        r = await m.http.post(
            f"{url}/triage",
            json={"decision": "refer_elsewhere"},
            headers=m.headers(alerted, "clinician"),
        )
        assert r.status_code == 200, r.text


async def test_the_queue_lists_intakes_awaiting_triage_before_those_awaiting_approval(
    matching_service,
) -> None:
    """A crisis (awaiting triage) comes first in the clinicians' queue however long approvals
    have waited: a page of approvals older than it must not hide it."""
    async with matching_service(worker=False) as m:
        approval = await m.submitted(uuid.uuid4())
        crisis = await m.submitted(uuid.uuid4(), **ESCALATED)
        await m.pool.execute(
            "UPDATE intakes SET status = 'awaiting_approval', status_since = $2"
            " WHERE intake_id = $1",
            approval,
            datetime.now(UTC) - timedelta(days=2),
        )
        r = await m.http.get(
            "/clinician/queue", params={"limit": 500}, headers=m.headers(uuid.uuid4(), "clinician")
        )
        assert r.status_code == 200, r.text
        # (Other tests' intakes wait in the same schema: the order is what is checked.)
        statuses = [entry["status"] for entry in r.json()]
        assert statuses == sorted(statuses, key=lambda status: status != "awaiting_triage")
        ids = [entry["intake_id"] for entry in r.json()]
        assert ids.index(str(crisis)) < ids.index(str(approval))
