"""A person's export as one document: every service's part, in one order, with a summary
of the whole in sv/en built from each part's own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from chassis.rights import EXPORT_KEPT_FOR
from notifications.domain.export import FORMAT, KEPT_DAYS, SERVICE_ORDER, one_document

REQUEST, PERSON = uuid.uuid4(), uuid.uuid4()
ASKED = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def part(service: str, sv: str, en: str) -> dict[str, object]:
    return {
        "service": service,
        "subject_id": str(PERSON),
        "generated_at": ASKED.isoformat(),
        "data": {"things": [service]},
        "summary": {"sv": [sv], "en": [en]},
    }


PARTS = {
    "notifications": part("notifications", "Meddelanden: 2", "Notifications: 2"),
    "booking": part("booking", "Bokning: 1 behandling", "Booking: 1 course"),
    "catalog": part("catalog", "Katalog: 1 omdöme", "Catalog: 1 review"),
    "matching": part("matching", "Matchning: 1 förfrågan", "Matching: 1 intake"),
}


def test_every_part_in_the_services_order_with_the_summary_of_the_whole() -> None:
    document = one_document(REQUEST, PERSON, ASKED, ASKED, PARTS)
    assert document["format"] == FORMAT
    assert document["request_id"] == str(REQUEST) and document["subject_id"] == str(PERSON)
    assert list(document["parts"]) == list(SERVICE_ORDER)
    assert document["parts"]["booking"]["data"] == {"things": ["booking"]}
    sv, en = document["summary"]["sv"], document["summary"]["en"]
    # what the document is first, then each service's own lines in order, then how long kept
    assert sv[0].startswith("Export av dina uppgifter") and str(REQUEST)[:8] in sv[0]
    assert sv[2:6] == [
        "Katalog: 1 omdöme",
        "Matchning: 1 förfrågan",
        "Bokning: 1 behandling",
        "Meddelanden: 2",
    ]
    assert en[2:6] == [
        "Catalog: 1 review",
        "Matching: 1 intake",
        "Booking: 1 course",
        "Notifications: 2",
    ]
    assert "30" in sv[-1] and "30" in en[-1]
    assert "2026-12-03" in en[0]


def test_a_missing_part_is_no_export() -> None:
    without_booking = {k: v for k, v in PARTS.items() if k != "booking"}
    with pytest.raises(ValueError, match="booking"):
        one_document(REQUEST, PERSON, ASKED, ASKED, without_booking)


def test_the_summary_says_as_long_as_the_parts_are_kept() -> None:
    assert KEPT_DAYS == EXPORT_KEPT_FOR.days
