import gc
import json
import uuid
import weakref
from datetime import UTC, datetime, timedelta, timezone

import jsoncompat
import pytest
from pydantic import ValidationError

from contracts import REGISTRY, ContractError, Envelope, decode, envelope_of
from contracts.events import IntakeEscalated, SessionBooked
from contracts.schemas import schema_of


def booked(**changes) -> SessionBooked:
    fields = dict(
        session_id=uuid.uuid4(),
        course_id=uuid.uuid4(),
        client_id=uuid.uuid4(),
        therapist_id=uuid.uuid4(),
        number=1,
        phase="initial",
        starts_at=datetime(2026, 3, 29, 8, 0, tzinfo=UTC),
        ends_at=datetime(2026, 3, 29, 8, 50, tzinfo=UTC),
        time_zone="Europe/Stockholm",
        mode="video",
        meeting_url="https://meet.samtal.example/abc",
        booked_by="client",
    )
    fields.update(changes)
    return SessionBooked(**fields)


def test_wrap_fills_the_envelope_and_round_trips() -> None:
    event = Envelope.wrap(booked(), correlation_id="journey-1", causation_id="req-1")
    assert event.event_type == "SessionBooked"
    assert event.producer == "booking"
    assert event.schema_version == 1
    assert event.key == str(event.payload.course_id)
    back = decode(event.to_bytes())
    assert back == event
    assert isinstance(back.payload, SessionBooked)


def test_the_envelope_class_of_a_payload_outlives_garbage_collection() -> None:
    # pydantic keeps parameterised classes only weakly: one built again on every wrap after a
    # collection was most of the cost of writing an event.
    first = weakref.ref(type(Envelope.wrap(booked())))
    gc.collect()
    assert first() is not None
    assert type(Envelope.wrap(booked())) is first()
    assert type(decode(Envelope.wrap(booked()).to_bytes())) is envelope_of(SessionBooked)


def test_correlation_defaults_to_the_event_itself() -> None:
    event = Envelope.wrap(booked())
    assert event.correlation_id == str(event.event_id)
    assert event.causation_id is None


def test_occurred_at_is_kept_in_utc() -> None:
    stockholm = timezone(timedelta(hours=2))
    event = Envelope.wrap(booked(), occurred_at=datetime(2026, 6, 1, 10, 0, tzinfo=stockholm))
    assert event.occurred_at == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_naive_times_are_rejected_naming_the_field() -> None:
    raw = json.loads(Envelope.wrap(booked()).to_bytes())
    raw["payload"]["starts_at"] = "2026-03-29T08:00:00"
    with pytest.raises(ContractError) as err:
        decode(json.dumps(raw))
    assert err.value.field == "payload.starts_at"


def test_envelopes_and_payloads_are_immutable() -> None:
    event = Envelope.wrap(booked())
    with pytest.raises(ValidationError):
        event.payload.number = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        event.event_type = "x"  # type: ignore[misc]


def test_unknown_event_type_is_rejected() -> None:
    raw = json.loads(Envelope.wrap(booked()).to_bytes())
    raw["event_type"] = "SessionTeleported"
    with pytest.raises(ContractError) as err:
        decode(json.dumps(raw).encode())
    assert err.value.field == "event_type"
    assert "SessionTeleported" in str(err.value)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("payload", "number"), 0, "payload.number"),
        (("payload", "phase"), "epilogue", "payload.phase"),
        (("payload", "session_id"), "not-a-uuid", "payload.session_id"),
        (("event_id",), "nope", "event_id"),
        (("correlation_id",), "", "correlation_id"),
    ],
)
def test_malformed_fields_are_named(path, value, field) -> None:
    raw = json.loads(Envelope.wrap(booked()).to_bytes())
    target = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ContractError) as err:
        decode(json.dumps(raw))
    assert err.value.field == field


def test_missing_payload_field_is_named() -> None:
    raw = json.loads(Envelope.wrap(booked()).to_bytes())
    del raw["payload"]["client_id"]
    with pytest.raises(ContractError) as err:
        decode(json.dumps(raw))
    assert err.value.field == "payload.client_id"


def test_not_json_and_not_an_object_are_rejected() -> None:
    with pytest.raises(ContractError):
        decode(b"\xff\xfe")
    with pytest.raises(ContractError):
        decode(b"[1, 2]")


def test_a_consumer_can_insist_on_one_type() -> None:
    event = Envelope.wrap(booked())
    with pytest.raises(ContractError) as err:
        decode(event.to_bytes(), expected=IntakeEscalated)
    assert err.value.field == "event_type"


def test_unknown_schema_version_is_rejected() -> None:
    raw = json.loads(Envelope.wrap(booked()).to_bytes())
    raw["schema_version"] = 2
    with pytest.raises(ContractError) as err:
        decode(json.dumps(raw))
    assert err.value.field == "schema_version"


def test_unknown_payload_fields_are_tolerated_for_minor_evolution() -> None:
    raw = json.loads(Envelope.wrap(booked()).to_bytes())
    raw["payload"]["added_in_a_later_minor"] = True
    assert decode(json.dumps(raw)).payload.number == 1


@pytest.mark.parametrize("spec", REGISTRY.specs, ids=lambda s: s.event_type)
def test_every_event_round_trips_a_generated_example(spec) -> None:
    """Values generated from each schema validate into the model and back unchanged."""
    example = json.loads(jsoncompat.generate_value(json.dumps(schema_of(spec)), depth=4))
    example["event_type"] = spec.event_type
    example["schema_version"] = spec.model.schema_version
    try:
        event = decode(example)
    except ContractError as err:
        # The generator does not know our cross-field rules; the schema's own are what we check.
        pytest.skip(f"generated example violates a rule outside the schema: {err}")
    assert decode(event.to_bytes()) == event
