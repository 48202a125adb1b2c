"""Request ids, JSON log lines, the masked database URL, per-request SQL counts, and 499s."""

import asyncio
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import text
from starlette.types import Message, Receive, Scope, Send

from app import observability
from app.db import db
from app.main import create_app
from app.observability import (
    BatchingStreamHandler,
    JsonFormatter,
    RequestContextMiddleware,
    _request_line,
    _sole_json_handler,
    configure_logging,
    logger,
)
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
    # The formatter looks for extra fields after a record's own attributes only.
    record = logging.makeLogRecord({"msg": "hi", "created": 1_764_547_200.5})
    record.__dict__.update(user="ann", _private="hidden")
    later = logging.makeLogRecord({"msg": "hi", "created": 1_764_547_201.0})

    line = json.loads(JsonFormatter().format(record))
    formatter = JsonFormatter()
    times = [json.loads(formatter.format(r))["time"] for r in (record, record, later)]

    assert line["user"] == "ann"
    assert "_private" not in line
    assert "msg" not in line
    assert "created" not in line
    # The time is formatted once per second, and moves with the seconds.
    assert times[0] == times[1] != times[2]
    assert times[0].startswith(("2025-11-30T", "2025-12-01T"))  # in the machine's zone


class _Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _batching(stream: io.StringIO) -> BatchingStreamHandler:
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def _line(message: str) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": message})


def _log_in_the_last_turn_of_a_loop(handler: logging.Handler, message: str) -> None:
    """Log on a loop in another thread that stops at once: its scheduled write never runs."""

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop.call_soon(handler.handle, _line(message))
        loop.call_soon(loop.stop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


async def test_the_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    stream = _Writes()
    handler = _batching(stream)

    for n in range(3):
        handler.handle(_line(f"line {n}"))
    waiting = list(stream.writes)
    await asyncio.sleep(0)  # the loop's next turn
    handler.handle(_line("line 3"))
    await asyncio.sleep(0)

    assert waiting == []
    assert stream.writes == ["line 0\nline 1\nline 2\n", "line 3\n"]


def test_a_line_logged_off_the_loop_goes_out_at_once_after_those_waiting() -> None:
    stream = _Writes()
    handler = _batching(stream)
    _log_in_the_last_turn_of_a_loop(handler, "in the last turn")
    waiting = list(stream.writes)

    thread = threading.Thread(target=handler.handle, args=(_line("from a thread"),))
    thread.start()
    thread.join()

    assert waiting == []
    assert stream.writes == ["in the last turn\nfrom a thread\n"]


async def test_a_new_loop_writes_what_it_logs_though_a_closed_one_left_lines() -> None:
    stream = _Writes()
    handler = _batching(stream)
    _log_in_the_last_turn_of_a_loop(handler, "left by a closed loop")

    handler.handle(_line("on this loop"))
    await asyncio.sleep(0)

    assert stream.writes == ["left by a closed loop\non this loop\n"]


async def test_flushing_writes_the_lines_still_waiting() -> None:
    # What logging.shutdown() does at exit.
    stream = _Writes()
    handler = _batching(stream)

    handler.handle(_line("last words"))
    handler.flush()

    assert stream.writes == ["last words\n"]


def test_the_app_logs_through_the_batching_handler() -> None:
    configure_logging("INFO")
    configure_logging("INFO")  # again: still one handler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]

    assert [type(handler) for handler in handlers] == [BatchingStreamHandler]


@pytest.mark.parametrize(
    ("path", "duration_ms", "statements"),
    [
        ("/users", 0.0, None),
        ('/a "quoted" \\ path', 12.3, 4),
        ("/caf\u00e9/\u2028/\x01", 12_345.6, 0),
    ],
)
def test_the_request_lines_template_writes_what_the_formatter_writes(
    path: str, duration_ms: float, statements: int | None
) -> None:
    fields: dict[str, object] = {
        "request_id": "abc-123",
        "method": "GET",
        "path": path,
        "status": 404,
        "duration_ms": duration_ms,
    }
    if statements is not None:
        fields["sql_statements"] = statements
    record = _request_line(("GET", path, 404), fields)
    formatter = JsonFormatter()

    assert formatter.format_request_line(record.created, fields) == formatter.format(record)


async def test_the_request_line_skips_the_record_when_only_the_apps_handler_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _Writes()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(logging.root, "handlers", [handler])  # without pytest's capture
    monkeypatch.setattr(logging.root, "level", logging.INFO)
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    fast = _sole_json_handler()
    await RequestContextMiddleware(app)(http_scope("/probe"), receive, send)
    await asyncio.sleep(0)  # the loop's next turn writes the line
    logger.addFilter(lambda record: True)  # a filter the line must pass: no longer fast
    slow = _sole_json_handler()
    logger.filters.clear()

    assert fast is handler
    assert slow is None
    line = json.loads(stream.getvalue())
    assert (line["message"], line["status"]) == ("GET /probe 204", 204)
    assert line["request_id"] == sent[0]["headers"][-1][1].decode()


def test_a_request_line_the_template_cannot_spell_still_goes_through_logging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _Writes()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(logging.root, "handlers", [handler])
    fields = {"request_id": "r", "method": "GET", "path": "/", "status": "200 OK"}

    observability._log_request_line({**fields, "duration_ms": 0.5})

    assert json.loads(stream.getvalue())["status"] == "200 OK"


def test_the_request_line_is_the_record_logger_info_would_make() -> None:
    configure_logging("INFO")  # which leaves every record's thread and process unset
    args = ("GET", "/users", 200)
    fields = {"request_id": "abc", "status": 200, "duration_ms": 1.5}
    made = _request_line(args, fields)
    expected = logger.makeRecord(
        logger.name, logging.INFO, observability.__file__, 0, "%s %s %s", args, None, extra=fields
    )

    times = ("created", "msecs", "relativeCreated")
    assert type(made) is logging.LogRecord
    # The same attributes in the same order, so the formatter finds the same extra fields.
    assert list(vars(made)) == list(vars(expected))
    assert {k: v for k, v in vars(made).items() if k not in times} == {
        k: v for k, v in vars(expected).items() if k not in times
    }
    assert abs(made.created - expected.created) < 1
    assert abs(made.relativeCreated - expected.relativeCreated) < 1000
    assert json.loads(JsonFormatter().format(made))["message"] == "GET /users 200"


def test_the_request_line_comes_from_the_apps_own_record_factory() -> None:
    class Traced(logging.LogRecord):
        pass

    original = logging.getLogRecordFactory()
    logging.setLogRecordFactory(Traced)
    try:
        made = _request_line(("GET", "/", 200), {"status": 200})
    finally:
        logging.setLogRecordFactory(original)

    assert type(made) is Traced
    assert made.getMessage() == "GET / 200"
    assert made.__dict__["status"] == 200


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
    # Behind PgBouncer, the transaction first sets its own time limits (app/pooler.py).
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
