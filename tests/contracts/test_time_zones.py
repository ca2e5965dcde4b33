"""Every time zone a form accepts (`contracts.inputs.TimeZoneName`: the names this machine
knows) travels on the events that carry one (`contracts.vocabulary.TimeZoneName`): a
profile or a session in `GMT0` or `EST5EDT` was accepted, then refused when announced."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from contracts.inputs import known_time_zones
from contracts.vocabulary import TimeZoneName


def test_every_time_zone_a_form_accepts_an_event_carries() -> None:
    carried = TypeAdapter(TimeZoneName)
    refused = []
    for name in sorted(known_time_zones()):
        try:
            carried.validate_python(name)
        except ValidationError:
            refused.append(name)
    assert refused == []
    for not_a_zone in ("", "/Europe", "Europe//Stockholm", "../etc/passwd", "x" * 65):
        try:
            carried.validate_python(not_a_zone)
        except ValidationError:
            continue
        raise AssertionError(f"{not_a_zone!r} passed")
