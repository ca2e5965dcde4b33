"""Shared by matching's use cases: the logger and the clock."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

log = structlog.get_logger("matching.service")


def _now() -> datetime:
    return datetime.now(UTC)
