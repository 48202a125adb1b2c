"""OpenTelemetry traces (OTEL_ENABLED): one trace per request, its statements as children.

The apps here are live (`make_live_app`): their own engines are the ones traced, so their
writes commit for real, and each test removes what it wrote. Spans go to the SDK's
in-memory exporter, next to the exporters that OTEL_TRACES_EXPORTER names (none here).
"""

import json
import logging
import subprocess
import sys
{%- if cookiecutter.include_example_api == "yes" %}
import uuid
{%- endif %}
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
{%- if cookiecutter.include_example_api == "yes" %}
from opentelemetry.trace import SpanKind, StatusCode, format_trace_id
{%- else %}
from opentelemetry.trace import SpanKind, format_trace_id
{%- endif %}
from pydantic import SecretStr, ValidationError
{%- if cookiecutter.include_example_api == "yes" %}
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
{%- else %}
from sqlalchemy import make_url
{%- endif %}

from app.main import create_app
from app.observability import JsonFormatter
from app.settings import Settings, SettingsError
from app.tracing import REQUEST_ID_ATTRIBUTE, TRACE_ID_FIELD
from tests.conftest import serve


@pytest.fixture(autouse=True)
def no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """No exporter of the environment's: the spans stay in the test's memory."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")


@asynccontextmanager
async def traced(app: FastAPI) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    """Serve a traced `app`, its finished spans in the exporter yielded with the client."""
    exporter = InMemorySpanExporter()
    app.state.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serve(app) as client:
        yield client, exporter


def request_span(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [span for span in spans if span.kind is SpanKind.SERVER and span.name == name]
    return span


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in spans
        if span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and span.context is not None
        and span.context.trace_id == parent.context.trace_id
    ]


def trace_id_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_trace_id(span.context.trace_id)


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "app.requests"
    ]
{%- if cookiecutter.include_example_api == "yes" %}


def statements(spans: Sequence[ReadableSpan]) -> list[str]:
    return [str((span.attributes or {}).get("db.statement", "")) for span in spans]


async def remove_users(engine: AsyncEngine, emails: Sequence[str]) -> None:
    """Delete what the live app committed: the users and their welcome notes."""
    async with engine.begin() as connection:
        for email in emails:
            found = {"email": email}
            users = "SELECT id FROM users WHERE email = :email"
            await connection.execute(text(f"DELETE FROM notes WHERE user_id IN ({users})"), found)
            await connection.execute(text("DELETE FROM users WHERE email = :email"), found)


async def test_a_request_that_reads_and_writes_is_one_trace_with_its_statements(
    make_live_app: Callable[..., FastAPI],
    engines: dict[str, AsyncEngine],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.requests")
    email = f"traced-{uuid.uuid4().hex[:8]}@example.com"
    try:
        async with traced(make_live_app(otel_enabled=True)) as (client, exporter):
            response = await client.post(
                "/users", json={"email": email, "username": email.split("@")[0]}
            )
            spans = exporter.get_finished_spans()
    finally:
        await remove_users(engines["main"], [email])

    assert response.status_code == 201
    request = request_span(spans, "POST /users")
    assert (request.attributes or {})[REQUEST_ID_ATTRIBUTE] == response.headers["X-Request-ID"]
    sql = statements(children(spans, request))
    # Two statements, or on PostgreSQL one that writes both rows.
    assert any("INSERT INTO users" in statement for statement in sql), sql
    assert any("INSERT INTO notes" in statement for statement in sql), sql
    [line] = [line for line in request_lines(caplog) if line["path"] == "/users"]
    assert line[TRACE_ID_FIELD] == trace_id_of(request)
    assert line["request_id"] == response.headers["X-Request-ID"]


async def test_a_failed_statement_is_traced_without_the_row_values(
    make_live_app: Callable[..., FastAPI], engines: dict[str, AsyncEngine]
) -> None:
    email = f"taken-{uuid.uuid4().hex[:8]}@example.com"
    try:
        async with traced(make_live_app(otel_enabled=True)) as (client, exporter):
            first = await client.post("/users", json={"email": email, "username": "taken-1"})
            again = await client.post("/users", json={"email": email, "username": "taken-2"})
            spans = exporter.get_finished_spans()
    finally:
        await remove_users(engines["main"], [email])

    assert (first.status_code, again.status_code) == (201, 409)
    [failed] = [span for span in spans if span.status.status_code is StatusCode.ERROR]
    assert "INSERT INTO users" in statements([failed])[0]
    assert failed.status.description  # it says why: the constraint, the driver's words
    # MySQL and MariaDB quote the row in their message ("Duplicate entry ..."); spans must not.
    for span in spans:
        assert email not in repr((span.status.description, span.attributes, span.events))
{%- endif %}


async def test_readiness_traces_the_statements_of_every_database(
    make_live_app: Callable[..., FastAPI],
    database_urls: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.requests")
    async with traced(make_live_app(otel_enabled=True)) as (client, exporter):
        response = await client.get("/health/ready", headers={"X-Request-ID": "ready-1"})
        spans = exporter.get_finished_spans()

    assert response.status_code == 200
    request = request_span(spans, "GET /health/ready")
    assert (request.attributes or {})[REQUEST_ID_ATTRIBUTE] == "ready-1"
    traced_databases = {(span.attributes or {}).get("db.name") for span in children(spans, request)}
    for url in database_urls.values():
        assert make_url(url).database in traced_databases
    [line] = [line for line in request_lines(caplog) if line["request_id"] == "ready-1"]
    assert line[TRACE_ID_FIELD] == trace_id_of(request)


def test_tracing_is_off_by_default(settings: Settings) -> None:
    assert settings.otel_enabled is False
    # In a fresh interpreter: this one imported the tracing packages for the tests above.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from app.main import create_app\n"
            "from app.settings import Settings\n"
            "app = create_app(Settings(secret_key='x', database_url='sqlite+aiosqlite://'))\n"
            "assert not hasattr(app.state, 'tracer_provider')\n"
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
            "'opentelemetry.instrumentation', 'app.tracing'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger", "OTEL_TRACES_EXPORTER names 'jaeger', but no span"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp", "OTEL_EXPORTER_OTLP_PROTOCOL 'udp' is not an"),
    ],
)
def test_an_exporter_that_cannot_be_had_is_named_by_the_settings_check(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError, match=problem):
        Settings(secret_key=SecretStr("x"), otel_enabled=True)
    # Tests build apps from settings they copy, which the check does not see: so does the app.
    with pytest.raises(SettingsError, match=problem):
        create_app(Settings(secret_key=SecretStr("x")).model_copy(update={"otel_enabled": True}))
