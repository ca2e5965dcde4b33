"""A handler's dependencies: FastStream `Context()` parameters, found at registration."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from faststream import Context

from chassis.consumer import EventConsumers, context_dependencies
from chassis.settings import ServiceSettings
from contracts import Envelope
from contracts.events import ReviewPublished


async def plain(event: Envelope[ReviewPublished], conn: Any) -> None: ...


async def configured(
    event: Envelope[ReviewPublished],
    conn: Any,
    settings: Annotated[ServiceSettings, Context()],
    publisher: Annotated[Any, Context("dead_letters")],
) -> None: ...


async def undeclared(event: Envelope[ReviewPublished], conn: Any, settings: Any) -> None: ...


def test_context_parameters_are_named_with_their_keys() -> None:
    assert context_dependencies(plain) == ()
    assert context_dependencies(configured) == (
        ("settings", "settings"),
        ("publisher", "dead_letters"),
    )


def test_a_parameter_that_is_not_a_context_is_refused_when_registered() -> None:
    consumers = EventConsumers("test")
    with pytest.raises(TypeError, match="settings"):
        consumers.handler(ReviewPublished, name="undeclared")(undeclared)
    assert consumers.handlers == []
