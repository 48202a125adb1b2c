"""Traces of the example's writes: a request's statements in its trace, and no row values
in what the app exports when a statement fails."""

import logging
import uuid
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.observability import tracing
from app.observability.tracing import REQUEST_ID_ATTRIBUTE, TRACE_ID_FIELD
from tests.observability.spans import (
    children,
    request_lines,
    request_span,
    trace_id_of,
    traced,
)


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


class _Exported(InMemorySpanExporter):
    """An exporter the app loads as it loads those OTEL_TRACES_EXPORTER names; it keeps
    what the app exports."""

    made: ClassVar[list["_Exported"]] = []

    def __init__(self) -> None:
        super().__init__()
        self.made.append(self)


async def test_a_failed_statement_is_exported_without_the_row_values(
    make_live_app: Callable[..., FastAPI],
    engines: dict[str, AsyncEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = EntryPoint("memory", f"{__name__}:_Exported", "opentelemetry_traces_exporter")
    monkeypatch.setattr(tracing, "span_exporters", lambda: [exporter])
    _Exported.made.clear()
    email = f"taken-{uuid.uuid4().hex[:8]}@example.com"
    try:
        async with traced(make_live_app(otel_enabled=True)) as (client, recorded):
            first = await client.post("/users", json={"email": email, "username": "taken-1"})
            again = await client.post("/users", json={"email": email, "username": "taken-2"})
            spans = recorded.get_finished_spans()
    finally:
        await remove_users(engines["main"], [email])
    [exported_by_the_app] = _Exported.made  # flushed when the lifespan ended
    exported = exported_by_the_app.get_finished_spans()

    assert (first.status_code, again.status_code) == (201, 409)
    [failed] = [span for span in spans if span.status.status_code is StatusCode.ERROR]
    assert "INSERT INTO users" in statements([failed])[0]
    [sent] = [span for span in exported if span.status.status_code is StatusCode.ERROR]
    assert sent.context == failed.context
    assert sent.status.description  # it says why: the constraint, the driver's words
    # MySQL and MariaDB quote the row in their message ("Duplicate entry ..."); what the
    # app exports must not.
    assert len(exported) == len(spans)
    for span in exported:
        assert email not in repr((span.status.description, span.attributes, span.events))
