"""Request ids, JSON log lines, the masked database URL, per-request SQL counts, and 499s."""

import asyncio
import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import text
from starlette.types import Message, Receive, Scope, Send

from app.db import db
from app.main import create_app
from app.observability.logs import JsonFormatter, configure_logging
from app.observability.requests import RequestContextMiddleware
from app.settings import Settings, SettingsError
from tests.asgi import http_scope
from tests.conftest import serve


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "app.requests"]


async def test_a_request_id_is_made_when_none_is_sent(client: httpx.AsyncClient) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")

    ids = {first.headers["X-Request-ID"], second.headers["X-Request-ID"]}
    assert len(ids) == 2
    assert all(len(request_id) == 32 for request_id in ids)


async def test_the_callers_request_id_is_echoed_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.requests")

    response = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})

    assert response.headers["X-Request-ID"] == "abc-123"
    [record] = request_lines(caplog)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "abc-123"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/health/live", 200)
    assert "sql_statements" not in line  # counted in debug mode only


async def test_a_request_id_that_is_not_a_plain_token_is_replaced(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "evil\tid " * 30})

    assert response.headers["X-Request-ID"].isalnum()


async def test_the_response_carries_one_request_id_even_where_the_app_set_it() -> None:
    # The error responses set the header themselves; the app may send the same list twice.
    headers = [(b"content-type", b"text/plain"), (b"X-Request-ID", b"from-the-app")]
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for _ in range(2):
            await send({"type": "http.response.start", "status": 404, "headers": headers})

    async def record(message: Message) -> None:
        sent.append(message)

    middleware = RequestContextMiddleware(app)
    scope = http_scope("/")
    scope["headers"] = [(b"x-request-id", b"req-9")]
    await middleware(scope, _no_body, record)

    for message in sent:
        assert message["headers"] == [(b"content-type", b"text/plain"), (b"x-request-id", b"req-9")]
    assert headers[1] == (b"X-Request-ID", b"from-the-app")  # the app's own list is left alone


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_log_lines_written_during_a_request_carry_its_id(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tests")
    lines: list[dict[str, object]] = []

    @app.get("/probe/log")
    async def log_something() -> None:
        record = logging.getLogger("tests").makeRecord("tests", logging.INFO, "", 0, "hi", (), None)
        lines.append(json.loads(JsonFormatter().format(record)))

    response = await client.get("/probe/log", headers={"X-Request-ID": "req-7"})

    assert response.status_code == 200
    assert lines == [
        {
            "time": lines[0]["time"],
            "level": "INFO",
            "logger": "tests",
            "message": "hi",
            "request_id": "req-7",
        }
    ]


def test_a_line_holds_the_extra_fields_and_those_a_filter_adds() -> None:
    record = logging.makeLogRecord({"msg": "hi %s", "args": ("there",), "created": 1_764_547_200.5})
    record.__dict__.update(user="ann", _private="hidden")

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "hi there"
    assert line["user"] == "ann"
    assert "_private" not in line
    assert "msg" not in line
    assert "created" not in line
    assert line["time"].startswith(("2025-11-30T", "2025-12-01T"))  # in the machine's zone
    assert line["time"][-5] in "+-"  # with its offset


@pytest.fixture
def app_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the app's logging writes to stderr, with its handler installed on it."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("INFO")
    configure_logging("INFO")  # again: still one handler
    ours = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(ours) == 1
    yield stream
    logging.getLogger().removeHandler(ours[0])


def _written(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_app_writes_each_record_as_one_json_line_on_stderr(app_stderr: io.StringIO) -> None:
    logging.getLogger("tests").info("hello %s", "you", extra={"user": "ann"})

    [line] = _written(app_stderr)

    assert (line["message"], line["level"], line["user"]) == ("hello you", "INFO", "ann")


def test_a_traceback_and_a_stack_are_fields_of_the_one_line(app_stderr: io.StringIO) -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("tests").exception("it broke", stack_info=True)

    [line] = _written(app_stderr)

    assert "ValueError: broken" in str(line["exception"])
    assert "test_a_traceback_and_a_stack_are_fields_of_the_one_line" in str(line["stack"])


async def test_debug_mode_logs_how_many_statements_a_request_ran(
    make_live_app: Callable[..., FastAPI], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_live_app(debug=True)

    @app.get("/probe/three-queries")
    async def three_queries() -> None:
        for _ in range(3):
            await db.session.execute(text("SELECT 1"))

    caplog.set_level(logging.INFO, logger="app.requests")
    async with serve(app) as client:
        await client.get("/probe/three-queries")
        await client.get("/health/live")

    # A field logged with `extra=` is an attribute that LogRecord's type does not declare.
    counts = [vars(record)["sql_statements"] for record in request_lines(caplog)]
    # Behind PgBouncer, the transaction first sets its own time limits (app/databases.py).
    limits = 1 if settings.database_pooler == "pgbouncer" else 0
    assert counts == [3 + limits, 0]


async def test_the_database_url_is_logged_with_the_password_masked(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: the service starts anyway and logs why it is not ready.
    url = "postgresql://app:s3cret-password@127.0.0.1:1/app"
    app = create_app(settings.model_copy(update={"database_url": url}))

    caplog.set_level(logging.INFO, logger="app")
    async with serve(app):
        pass

    masked = "postgresql+asyncpg://app:***@127.0.0.1:1/app"
    assert f"database main: {masked}" in caplog.text
    assert f"database main ({masked}) is not ready: unreachable (ConnectionRefusedError)" in (
        caplog.text
    )
    assert "s3cret-password" not in caplog.text


def add_stream_route(app: FastAPI) -> None:
    @app.get("/probe/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await asyncio.Event().wait()  # the rest would come later; the client leaves first

        return StreamingResponse(chunks())


def assert_logged_as_499_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    [line] = request_lines(caplog)
    assert vars(line)["status"] == 499
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []


async def test_a_client_that_leaves_mid_stream_is_logged_as_499(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    add_stream_route(app)
    first_chunk_sent = asyncio.Event()

    async def receive() -> Message:
        await first_chunk_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            first_chunk_sent.set()

    caplog.set_level(logging.INFO)
    async with LifespanManager(app) as manager:
        await asyncio.wait_for(manager.app(http_scope("/probe/stream"), receive, send), 5)

    assert_logged_as_499_without_traceback(caplog)


async def test_a_client_that_leaves_when_send_fails_is_logged_as_499(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    # ASGI 2.4 servers report a disconnect by failing send(), not with a message.
    add_stream_route(app)

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("a 2.4 response does not wait for the disconnect message")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("the client closed the connection")

    caplog.set_level(logging.INFO)
    scope = http_scope("/probe/stream", spec_version="2.4")
    async with LifespanManager(app) as manager:
        # Nothing is raised to the server: there is no one left to answer.
        await asyncio.wait_for(manager.app(scope, receive, send), 5)

    assert_logged_as_499_without_traceback(caplog)


async def test_a_client_that_leaves_mid_body_is_logged_as_499(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    @app.post("/probe/echo")
    async def echo(payload: dict[str, str]) -> dict[str, str]:
        return payload

    first_half = b'{"name": "Al'
    cut_short: list[Message] = [{"type": "http.request", "body": first_half, "more_body": True}]

    async def receive() -> Message:
        return cut_short.pop() if cut_short else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass  # the client is gone; a server drops what the app still sends

    headers = [(b"host", b"test"), (b"content-type", b"application/json")]
    scope = {**http_scope("/probe/echo"), "method": "POST", "headers": headers}
    caplog.set_level(logging.INFO)
    async with LifespanManager(app) as manager:
        await asyncio.wait_for(manager.app(scope, receive, send), 5)

    assert_logged_as_499_without_traceback(caplog)


async def test_a_disconnect_after_the_response_is_not_a_499(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    # Servers answer receive() with `http.disconnect` once the response is complete.
    @app.get("/probe/stream-done")
    async def stream_done() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"all of it\n"

        return StreamingResponse(chunks())

    response_complete = asyncio.Event()

    async def receive() -> Message:
        await response_complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            response_complete.set()
            await asyncio.sleep(0)  # the listening task gets its disconnect first

    caplog.set_level(logging.INFO)
    async with LifespanManager(app) as manager:
        await asyncio.wait_for(manager.app(http_scope("/probe/stream-done"), receive, send), 5)

    [line] = request_lines(caplog)
    assert vars(line)["status"] == 200


@pytest.mark.parametrize("given", ["warning", "Warning", " WARNING "])
def test_the_log_level_is_read_whatever_its_case(settings: Settings, given: str) -> None:
    assert Settings(**{**settings.model_dump(), "log_level": given}).log_level == "WARNING"


def test_an_unknown_log_level_is_refused_with_the_choices(settings: Settings) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(**{**settings.model_dump(), "log_level": "verbose"})

    message = str(SettingsError.from_validation_error(raised.value))
    assert "LOG_LEVEL" in message
    assert "'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in message
