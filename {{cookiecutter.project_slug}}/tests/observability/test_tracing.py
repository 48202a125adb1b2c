"""OpenTelemetry traces (OTEL_ENABLED): one trace per request, its statements as children.

The apps here are live (`make_live_app`): their own engines are the ones traced, so their
writes commit for real, and each test removes what it wrote. Spans go to the SDK's
in-memory exporter, next to the exporters that OTEL_TRACES_EXPORTER names (none here).
"""

import logging
import subprocess
import sys
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import make_url

from app.main import create_app
from app.observability.tracing import REQUEST_ID_ATTRIBUTE, TRACE_ID_FIELD
from app.settings import Settings, SettingsError
from tests.observability.spans import children, request_lines, request_span, trace_id_of, traced


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
            "'opentelemetry.instrumentation', 'app.observability.tracing'))))",
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
