"""A person's data export as ONE document (GDPR art. 15/20): every service's part, and a
summary of the whole in Swedish and English that a person can read without the JSON.

Each service keeps its own part (chassis.rights); notifications, which took the request,
puts the parts together when the person fetches their export. Pure: the parts come in.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

# The document's format, for whoever reads it with a program (art. 20: portability).
FORMAT = "samtal-export/1"
# The order the parts are listed and summarised in.
SERVICE_ORDER = ("catalog", "matching", "booking", "notifications")
KEPT_DAYS = 30  # chassis.rights.EXPORT_KEPT_FOR: how long the parts wait for the person


def _ref(request_id: uuid.UUID) -> str:
    return str(request_id)[:8]


def one_document(
    request_id: uuid.UUID,
    subject_id: uuid.UUID,
    requested_at: datetime,
    generated_at: datetime,
    parts: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The export: `parts` (service -> its part, as the service made it) and a summary in
    sv/en that opens with what the document is and then gives each service's own summary."""
    missing = set(SERVICE_ORDER) - set(parts)
    if missing:
        raise ValueError(f"an export needs every service's part; missing {sorted(missing)}")
    ordered = {s: dict(parts[s]) for s in SERVICE_ORDER}
    day = requested_at.date().isoformat()
    sv = [
        f"Export av dina uppgifter i Samtal (begäran {_ref(request_id)}, {day}).",
        'Maskinläsbar: fältet "parts" har en del per tjänst med dess data i JSON.',
        *(line for part in ordered.values() for line in part["summary"]["sv"]),
        f"Delarna sparas i {KEPT_DAYS} dagar; varje hämtning syns i din åtkomstlogg.",
    ]
    en = [
        f"Export of your data in Samtal (request {_ref(request_id)}, {day}).",
        'Machine-readable: the field "parts" holds one part per service with its data as JSON.',
        *(line for part in ordered.values() for line in part["summary"]["en"]),
        f"The parts are kept for {KEPT_DAYS} days; every fetch shows in your access log.",
    ]
    return {
        "format": FORMAT,
        "request_id": str(request_id),
        "subject_id": str(subject_id),
        "requested_at": requested_at.isoformat(),
        "generated_at": generated_at.isoformat(),
        "summary": {"sv": sv, "en": en},
        "parts": ordered,
    }
