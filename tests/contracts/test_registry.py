import re

from contracts import ALL_EVENTS, REGISTRY
from contracts.events import TherapistProfilePublished

TOPIC = re.compile(r"^(catalog|matching|booking|notifications)\.[a-z]+(-[a-z]+)*\.v[0-9]+$")


def test_every_event_has_one_topic_named_by_the_convention() -> None:
    topics = [spec.topic for spec in REGISTRY.specs]
    assert len(topics) == len(set(topics)) == len(ALL_EVENTS)
    for topic in topics:
        assert TOPIC.match(topic), topic


def test_core_events_are_registered() -> None:
    for name in ("IntakeSubmitted", "TherapistMatched", "SessionBooked", "CourseCompleted"):
        assert name in REGISTRY.by_type


def test_topic_names_follow_the_producer_and_major() -> None:
    assert REGISTRY.topic(TherapistProfilePublished) == "catalog.therapist-profile-published.v1"
    assert REGISTRY.topic("IntakeSubmitted") == "matching.intake-submitted.v1"


def test_key_field_is_a_required_field_of_the_payload() -> None:
    for spec in REGISTRY.specs:
        field = spec.model.model_fields.get(spec.key_field)
        assert field is not None and field.is_required(), spec.event_type


def test_compacted_topics_are_keyed_by_the_therapist() -> None:
    compacted = [spec for spec in REGISTRY.specs if spec.compacted]
    assert {s.event_type for s in compacted} >= {
        "TherapistProfilePublished",
        "TherapistProfileWithdrawn",
    }
    for spec in compacted:
        assert spec.key_field == "therapist_id"


def test_ordering_keys_match_the_aggregate() -> None:
    by_key = {spec.event_type: spec.key_field for spec in REGISTRY.specs}
    assert by_key["IntakeSubmitted"] == by_key["TherapistMatched"] == "intake_id"
    assert by_key["SessionBooked"] == by_key["CourseCompleted"] == "course_id"


def test_partition_counts_are_positive() -> None:
    assert all(spec.partitions >= 1 for spec in REGISTRY.specs)
