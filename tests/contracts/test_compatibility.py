"""Committed JSON Schema snapshots guard the current major version of every event."""

import copy
import json

import pytest

from contracts import REGISTRY
from contracts.schemas import SNAPSHOT_DIR, is_compatible, render, schema_of


def snapshot(spec) -> dict:
    path = SNAPSHOT_DIR / spec.snapshot_name
    assert path.exists(), f"no snapshot for {spec.event_type}: run `make schemas`"
    return json.loads(path.read_text())


@pytest.mark.parametrize("spec", REGISTRY.specs, ids=lambda s: s.event_type)
def test_models_stay_compatible_with_their_snapshot(spec) -> None:
    assert is_compatible(snapshot(spec), schema_of(spec)), (
        f"{spec.event_type} changed in a way that breaks consumers of v"
        f"{spec.model.schema_version}: publish a new major on a new topic instead"
    )


@pytest.mark.parametrize("spec", REGISTRY.specs, ids=lambda s: s.event_type)
def test_snapshots_are_up_to_date(spec) -> None:
    assert render(schema_of(spec)) == render(snapshot(spec)), "run `make schemas` and commit"


def test_no_stray_snapshots() -> None:
    expected = {spec.snapshot_name for spec in REGISTRY.specs}
    assert {p.name for p in SNAPSHOT_DIR.glob("*.json")} == expected


def _payload(schema: dict, spec) -> dict:
    return schema["$defs"][spec.model.__name__]


BOOKED = REGISTRY.spec("SessionBooked")


def _changed(change) -> bool:
    old = snapshot(BOOKED)
    new = copy.deepcopy(old)
    change(_payload(new, BOOKED))
    return is_compatible(old, new)


def test_adding_an_optional_field_passes() -> None:
    def add(p):
        p["properties"]["room_hint"] = {"anyOf": [{"type": "integer"}, {"type": "null"}]}

    assert _changed(add)


def test_removing_a_field_fails() -> None:
    def remove(p):
        del p["properties"]["number"]
        p["required"].remove("number")

    assert not _changed(remove)


def test_renaming_a_field_fails() -> None:
    def rename(p):
        p["properties"]["session_number"] = p["properties"].pop("number")
        p["required"] = [("session_number" if f == "number" else f) for f in p["required"]]

    assert not _changed(rename)


def test_changing_a_type_fails() -> None:
    def retype(p):
        p["properties"]["number"] = {"type": "string"}

    assert not _changed(retype)


def test_making_an_optional_field_required_fails() -> None:
    def require(p):
        p["required"].append("series_id")

    assert not _changed(require)


def test_narrowing_an_enum_fails() -> None:
    def narrow(p):
        p["properties"]["phase"]["enum"] = ["initial", "middle"]

    assert not _changed(narrow)
