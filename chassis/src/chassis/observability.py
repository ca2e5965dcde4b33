"""Structured JSON logs with journey ids, Prometheus metrics, OpenTelemetry when configured."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars

from chassis.settings import ServiceSettings

JOURNEY_KEYS = ("correlation_id", "causation_id", "event_id", "request_id")


def configure_logging(settings: ServiceSettings) -> None:
    level = getattr(logging, settings.log_level)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    bind_contextvars(service=settings.service)
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)


def current_ids() -> dict[str, str]:
    context = get_contextvars()
    return {k: str(context[k]) for k in JOURNEY_KEYS if context.get(k)}


def trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, for Kafka headers (empty without OTel: asking
    the propagator costs more than the rest of writing an event)."""
    if not _tracing_configured:
        return {}
    try:
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier
    except Exception:
        return {}


_tracing_configured = False


def flush_traces(shutdown: bool = False) -> None:
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
    if shutdown and hasattr(provider, "shutdown"):
        provider.shutdown()


def configure_tracing(settings: ServiceSettings) -> bool:
    """Export spans over OTLP only when an endpoint is configured."""
    global _tracing_configured
    if not settings.otlp_endpoint:
        return False
    if _tracing_configured:
        return True
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint}/v1/traces"))
    )
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument()
    _tracing_configured = True
    return True
