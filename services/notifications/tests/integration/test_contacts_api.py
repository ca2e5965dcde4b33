"""PUT/GET /contacts/me against the real database: own contacts only, clear 422s."""

from __future__ import annotations

import uuid
from typing import Any

from chassis import db
from chassis.app import build
from chassis.auth import mint
from notifications.app import DEFINITION


def auth(jwt_keys: Any, person: uuid.UUID, role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(jwt_keys[0], person, role)}"}  # type: ignore[arg-type]


async def test_a_person_sets_and_reads_only_their_own_contacts(migrated, serve, jwt_keys) -> None:
    settings = await migrated(DEFINITION)
    ann, bo, admin = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    as_ann = auth(jwt_keys, ann, "client")
    as_bo = auth(jwt_keys, bo, "therapist")
    async with serve(build(DEFINITION, settings, "api")) as http:
        # Nothing set yet: defaults, in-app only.
        r = await http.get("/contacts/me", headers=as_ann)
        assert r.status_code == 200
        assert r.json() | {"updated_at": None} == {
            "email": None,
            "phone": None,
            "language": "sv",
            "time_zone": "Europe/Stockholm",
            "channels": {"email": False, "sms": False, "in_app": True},
            "saved": False,
            "updated_at": None,
        }

        r = await http.put(
            "/contacts/me",
            headers=as_ann,
            json={
                "email": "  Ann.Svensson@EXAMPLE.se ",
                "phone": "070-123 45 67",
                "language": "en",
                "channels": {"email": True, "sms": True},
            },
        )
        assert r.status_code == 200, r.text
        saved = r.json()
        assert saved["email"] == "Ann.Svensson@example.se"
        assert saved["phone"] == "+46701234567"
        assert saved["language"] == "en"
        assert saved["channels"] == {"email": True, "sms": True, "in_app": True}
        assert saved["saved"] is True and saved["updated_at"]
        assert (await http.get("/contacts/me", headers=as_ann)).json() == saved

        # Somebody else sees their own (nothing), never Ann's.
        theirs = (await http.get("/contacts/me", headers=as_bo)).json()
        assert theirs["email"] is None and theirs["saved"] is False
        # There is no way to ask for a person's contacts by id, for anyone.
        as_admin = auth(jwt_keys, admin, "admin")
        assert (await http.get(f"/contacts/{ann}", headers=as_admin)).status_code == 404
        assert (await http.get("/contacts/me", headers=as_admin)).status_code == 403
        assert (await http.get("/contacts/me")).status_code == 401

        # Clear messages a frontend can show; nothing is changed by a refused PUT.
        cases: list[tuple[dict[str, Any], str]] = [
            ({"email": "ann@"}, "email: Enter a valid e-mail address"),
            ({"email": "ann@example.se", "phone": "070-12"}, "phone: Enter a valid phone number"),
            ({"email": "ann@example.se", "language": "de"}, "language: Choose a language"),
            ({"phone": "070-123 45 67"}, "Add an e-mail address, or turn e-mail notifications off"),
            (
                {"email": "ann@example.se", "channels": {"sms": True}},
                "Add a mobile number, or turn SMS notifications off",
            ),
            (
                {"email": "ann@example.se", "phone": "08-123 456 78", "channels": {"sms": True}},
                "SMS needs a mobile number",
            ),
            (
                {"email": "ann@example.se", "channels": {"in_app": False}},
                "The in-app inbox cannot be turned off",
            ),
            ({"email": "ann@example.se", "time_zone": "Mars/Base"}, "time zone"),
            ({"email": "ann@example.se", "nickname": "Ann"}, "nickname"),
        ]
        for body, message in cases:
            r = await http.put("/contacts/me", headers=as_ann, json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["code"] == "invalid_request"
            assert message in r.json()["detail"], (body, r.json()["detail"])
        assert (await http.get("/contacts/me", headers=as_ann)).json() == saved

        # Blank clears an address; e-mail off then, in-app only.
        r = await http.put(
            "/contacts/me",
            headers=as_ann,
            json={"email": "", "phone": " ", "channels": {"email": False}},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["email"], r.json()["phone"], r.json()["language"]) == (None, None, "sv")

        # The AsyncAPI document names every event this service turns into messages.
        doc = (await http.get("/asyncapi.json")).text
        for topic in ("matching.intake-escalated.v1", "booking.session-booked.v1"):
            assert settings.topic(topic) in doc, topic


async def test_contacts_stored_before_a_rule_changed_are_shown_as_stored(
    migrated, serve, jwt_keys
) -> None:
    """A number saved for SMS that the phone-number data no longer counts as mobile (it
    changes with the library's updates; here a landline written with SQL, as such a row
    would read) is shown as stored, with SMS as chosen: the person sees what to fix, and
    saving it again is refused with the rule."""
    settings = await migrated(DEFINITION)
    ann = uuid.uuid4()
    as_ann = auth(jwt_keys, ann, "client")
    async with serve(build(DEFINITION, settings, "api")) as http:
        r = await http.put(
            "/contacts/me",
            headers=as_ann,
            json={"phone": "070-123 45 67", "channels": {"email": False, "sms": True}},
        )
        assert r.status_code == 200, r.text
        pool = await db.create_pool(settings)
        try:
            await pool.execute(
                "UPDATE contacts SET phone = '+46812345678' WHERE person_id = $1", ann
            )
        finally:
            await pool.close()
        shown = await http.get("/contacts/me", headers=as_ann)
        assert shown.status_code == 200, shown.text
        assert shown.json()["phone"] == "+46812345678"
        assert shown.json()["channels"] == {"email": False, "sms": True, "in_app": True}
        settable = {k: shown.json()[k] for k in ("phone", "channels")}
        again = await http.put("/contacts/me", headers=as_ann, json=settable)
        assert again.status_code == 422 and "mobile" in again.json()["detail"], again.text
