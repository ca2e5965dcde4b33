"""Samtal's event contracts: envelope, payloads, registry."""

from contracts.envelope import ContractError, Envelope, EventPayload, envelope_of
from contracts.events import *  # noqa: F403
from contracts.events import ALL_EVENTS
from contracts.registry import REGISTRY, EventSpec, decode, topic_of

__all__ = [
    "ALL_EVENTS",
    "REGISTRY",
    "ContractError",
    "Envelope",
    "EventPayload",
    "EventSpec",
    "decode",
    "envelope_of",
    "topic_of",
]
