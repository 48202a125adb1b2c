"""OpenTelemetry traces, on when OTEL_ENABLED is set: a span per request and per SQL statement.

`create_app` calls `instrument(app)` last, and imports this module only then: its packages
are the project's `tracing` extra, and a service that does not trace never loads them. The
factory runs in each server process after it started (uvicorn calls it in every worker it
spawns, and again after each reload), so the span exporter's thread and connections belong
to that process and are never inherited across a fork.

- The TracerProvider is built from the standard OTEL_* variables of the process
  environment: OTEL_SERVICE_NAME (the project's name when unset), OTEL_RESOURCE_ATTRIBUTES,
  OTEL_TRACES_SAMPLER, OTEL_TRACES_EXPORTER (`otlp`, the default, `console` or `none`),
  OTEL_EXPORTER_OTLP_ENDPOINT and the rest of the exporter's and OTEL_BSP_* batching
  variables, which the SDK reads itself.
- The FastAPI instrumentation wraps the whole middleware stack, so the request's span
  encloses the session middlewares and their COMMIT; each engine of `app.state.engines`
  is traced through its `sync_engine`, so every statement of every database is a child of
  the request's span.
- The request's span carries its `request_id`; the request's log line and the error
  line of a 500 carry the `trace_id`, so a log search and a trace search find each other.
- A failed statement's span says why with the row values hidden, as the logs do: every
  exporter sees the spans through a filter that hides them.

When the app's lifespan ends, the instrumentation is removed and the provider flushes its
spans and shuts down.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.logs import hide_row_values
from app.settings import SettingsError, span_exporters

__all__ = ["REQUEST_ID_ATTRIBUTE", "TRACE_ID_FIELD", "instrument"]

# The same name as the log lines' field, so that one search key finds both.
REQUEST_ID_ATTRIBUTE = "request_id"
TRACE_ID_FIELD = "trace_id"
DEFAULT_SERVICE_NAME = "{{ cookiecutter.project_slug }}"
# The loggers of the request's line and of a 500's error line.
_LOGGERS = ("app.requests", "app.web.errors")


def instrument(app: FastAPI) -> None:
    """Trace `app`'s requests and the statements of every engine in `app.state.engines`.

    Call it once the app has its middlewares. It refuses an OTEL_TRACES_EXPORTER it
    cannot honour with a SettingsError naming the variable and the fix.
    """
    exporters = _exporters()
    provider = TracerProvider(resource=_resource())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(_HidingRowValues(exporter)))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # The process's first app also serves trace.get_tracer() in the app's own code, so
        # that spans made there join the request's trace. It can be set only once.
        trace.set_tracer_provider(provider)
    app.state.tracer_provider = provider

    # Outermost of the app's own middlewares: it reads the id that RequestContextMiddleware,
    # inside it, has put in the scope's state.
    app.add_middleware(_RequestIdOnSpan)
    # The receive and send spans of each ASGI message would double the spans per request,
    # telling little that the request's span does not.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    engines = [engine.sync_engine for engine in _engines(app)]
    # The instrumentation declares SQLAlchemy < 2.1, which the project allows; the tests
    # in tests/observability/ show the statements traced on the version installed. It is
    # one per process: it also wraps Engine.connect (a `connect` span for each connection
    # a request takes from a pool), so one app per process is traced, as servers run it.
    SQLAlchemyInstrumentor().instrument(
        engines=engines, tracer_provider=provider, skip_dep_check=True
    )
    trace_ids = _TraceIdOnRecord()
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(trace_ids)

    lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def traced_lifespan(app: FastAPI) -> AsyncIterator[Any]:
        try:
            async with lifespan(app) as state:
                yield state
        finally:
            # After the app's own shutdown, so that the spans of that are exported too.
            for name in _LOGGERS:
                logging.getLogger(name).removeFilter(trace_ids)
            SQLAlchemyInstrumentor().uninstrument()
            FastAPIInstrumentor.uninstrument_app(app)
            provider.shutdown()  # exports what is still queued

    app.router.lifespan_context = traced_lifespan


def _engines(app: FastAPI) -> list[AsyncEngine]:
    engines: dict[str, AsyncEngine] = app.state.engines
    return list(engines.values())


def _resource() -> Resource:
    resource = Resource.create()
    # Without OTEL_SERVICE_NAME (or a service.name in OTEL_RESOURCE_ATTRIBUTES) the SDK
    # names every service "unknown_service".
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _exporters() -> list[SpanExporter]:
    """The span exporters OTEL_TRACES_EXPORTER names; `none` records spans and sends none."""
    try:
        return [exporter.load()() for exporter in span_exporters()]
    except ValueError as exc:  # the settings check names it first; this covers a test's app
        raise SettingsError(str(exc)) from None


class _RequestIdOnSpan:
    """Pure ASGI: puts the request id on the request's span as the response starts.

    Not later: the instrumentation ends the span with the response's last byte. A request
    that ends with no response (the client left) gets the id when the app returns.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()

        def add_request_id() -> None:
            request_id = scope.get("state", {}).get("request_id")
            if request_id is not None and span.is_recording():
                span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_request_id()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            add_request_id()


class _TraceIdOnRecord(logging.Filter):
    """Adds the current trace's id to a record, as the `trace_id` field of its JSON line."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            setattr(record, TRACE_ID_FIELD, trace.format_trace_id(context.trace_id))
        return True


class _HidingRowValues(SpanExporter):
    """Exports through `exporter`, with the row values that database errors quote hidden
    from each span's status and exception events, as the log lines hide them.

    The SQLAlchemy instrumentation ends a failed statement's span with the driver's
    message as it is, and PostgreSQL's DETAIL line and MySQL's "Duplicate entry" quote
    the row's values.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([_without_row_values(span) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def _without_row_values(span: ReadableSpan) -> ReadableSpan:
    description = span.status.description
    if description is None and not any(event.name == "exception" for event in span.events):
        return span
    status = Status(span.status.status_code, description and hide_row_values(description))
    events = [
        Event(event.name, _hidden_attributes(event.attributes), event.timestamp)
        if event.name == "exception"
        else event
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _hidden_attributes(attributes: Attributes) -> dict[str, Any]:
    return {
        key: hide_row_values(value) if isinstance(value, str) else value
        for key, value in (attributes or {}).items()
    }
