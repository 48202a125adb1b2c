"""Observability: a request id on every request, JSON log lines, and per-request SQL counts.

`RequestContextMiddleware` takes the id from the `X-Request-ID` header (or makes one),
echoes it in the response, and logs one line per request. Every log line written while
the request runs carries the id, so one grep finds everything a request did. A client
that left before the response was complete is logged as 499, whatever the app sent. With
`count_statements(engine)` installed (the app does it in debug mode), that line also
says how many SQL statements the request ran, which is how N+1 query patterns show up.

`configure_logging()` formats the app's records as JSON; `log-config.json` in the
project root makes uvicorn's own lines (startup, shutdown, access) the same JSON lines.
On the event loop's thread the lines of one turn of the loop go out in one write.
The engines hide statement parameters; the formatter also hides the row values that
database servers quote in their own error messages, so no log line carries users' data.
"""

import asyncio
import json
import logging
import random
import re
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar
from itertools import islice
from json.encoder import encode_basestring_ascii
from types import TracebackType
from typing import Any, TextIO

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "BatchingStreamHandler",
    "JsonFormatter",
    "RequestContextMiddleware",
    "configure_logging",
    "count_statements",
    "current_request_id",
    "hide_row_values",
]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode("latin-1")  # as ASGI spells header names
# A caller's id is echoed into logs and headers, so only a plain token is accepted;
# anything else (too long, spaces, control characters) is replaced by a fresh id.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The attributes every LogRecord has; anything else was passed with `extra=` and
# belongs in the JSON line, except uvicorn's `color_message`: the message again, with
# terminal colour codes, for its own formatter.
_BLANK_RECORD = vars(logging.LogRecord("", 0, "", 0, "", None, None))
_NOT_FIELDS = frozenset(_BLANK_RECORD) | {"message", "asctime", "taskName", "color_message"}
_RECORD_ATTRIBUTES = len(_BLANK_RECORD)
# One encoder for every line: json.dumps(..., default=str) would build a new one each time.
_ENCODER = json.JSONEncoder(default=str)
_encode_string = encode_basestring_ascii  # what _ENCODER does with a string

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_statements: ContextVar[list[int] | None] = ContextVar("sql_statements", default=None)

logger = logging.getLogger("app.requests")
_REQUEST_MESSAGE = "%s %s %s"  # method, path, status
# The request line's record as it is on every request but for its time and arguments.
# The thread and process stay unset, as configure_logging() has every record leave them.
_REQUEST_LINE = {
    **vars(logging.LogRecord(logger.name, logging.INFO, __file__, 0, _REQUEST_MESSAGE, (), None)),
    "thread": None,
    "threadName": None,
    "processName": None,
    "process": None,
}
_LOGGING_STARTED: float = getattr(logging, "_startTime", time.time())  # relativeCreated's zero
# The request line as JsonFormatter.format() writes it: its fields in that order, the
# request id of the extra fields in the place of the default one.
_REQUEST_LINE_JSON = (
    '{"time": %s, "level": "INFO", "logger": '
    + _ENCODER.encode(logger.name)
    + ', "message": %s, "request_id": %s, "method": %s, "path": %s, "status": %d, '
    '"duration_ms": %r%s}'
)

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

# Where database servers quote row values in their error messages, which an engine's
# hide_parameters cannot reach: PostgreSQL's DETAIL line ("Key (email)=(ann@...) already
# exists", "Failing row contains (...)") and MySQL's "Duplicate entry '...' for key".
_ROW_VALUES = (
    (re.compile(r"^(\s*DETAIL:).*$", re.MULTILINE), r"\1 [row values hidden]"),
    (re.compile(r"Duplicate entry '.*?' for key", re.DOTALL), "Duplicate entry [hidden] for key"),
)


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object: time, level, logger, message, request id."""

    def __init__(self) -> None:
        super().__init__()
        # The time to the second, formatted once per second rather than once per line.
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get(),
        }
        # Fields passed with `extra=` (a request_id among them) win over the defaults. A
        # record's own attributes come first in its __dict__, so only those after them
        # can be extra fields.
        for key, value in islice(vars(record).items(), _RECORD_ATTRIBUTES, None):
            if key not in _NOT_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)

    def formatException(self, ei: _ExcInfo) -> str:
        return hide_row_values(super().formatException(ei))

    def format_request_line(self, created: float, fields: dict[str, Any]) -> str:
        """What `format()` writes for the request line of `fields`, logged at `created`,
        filled into a template instead of encoded key by key, at a fraction of the cost."""
        method, path, status = fields["method"], fields["path"], fields["status"]
        statements = fields.get("sql_statements")
        return _REQUEST_LINE_JSON % (
            _encode_string(self._time(created)),
            _encode_string(_REQUEST_MESSAGE % (method, path, status)),
            _encode_string(fields["request_id"]),
            _encode_string(method),
            _encode_string(path),
            status,
            fields["duration_ms"],
            "" if statements is None else f', "sql_statements": {statements:d}',
        )

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second[0]:
            when = time.strftime("%Y-%m-%dT%H:%M:%S%z", self.converter(created))
            self._second = (second, when)
        return self._second[1]


def hide_row_values(text: str) -> str:
    """`text` with the row values that database error messages quote replaced."""
    for pattern, replacement in _ROW_VALUES:
        text = pattern.sub(replacement, text)
    return text


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes the lines of one turn of the event loop in one write.

    Written and flushed one by one, the request lines cost a system call per request,
    which at thousands of requests a second is a good part of what a request costs. Here
    a line logged on a thread that runs an event loop waits until the loop's next turn,
    microseconds later, and goes out with the others logged meanwhile. A line logged
    anywhere else is written at once, after any that are waiting, so the order holds.
    `logging.shutdown()`, which runs at exit, writes whatever still waits; a process
    killed outright (SIGKILL) loses at most the lines of its last turn.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []
        # The loop a write is scheduled on; a loop that closed before running it is not
        # waited for, as the next line's loop is a different one.
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._waiting.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        self._schedule()

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled_on = None
            self._write()
        finally:
            self.release()

    def write_line(self, line: str) -> None:
        """Write `line`, formatted already, as emit() writes a record's."""
        self.acquire()
        try:
            self._waiting.append(line)
            self._schedule()
        finally:
            self.release()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write()
            return
        if self._scheduled_on is not loop:
            self._scheduled_on = loop
            loop.call_soon(self.flush)

    def _write(self) -> None:
        if not self._waiting:
            return
        text = self.terminator.join(self._waiting) + self.terminator
        self._waiting.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            # What handleError reports for a record; the lines themselves are lost.
            self.handleError(logging.makeLogRecord({"msg": "writing log lines failed"}))


def configure_logging(level: str) -> None:
    """Send every log record to stderr as JSON, at `level` and above; safe to call again."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, JsonFormatter):
            handler.flush()
            root.removeHandler(handler)
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # No JSON field shows a record's thread or process, and looking them up is a good
    # part of what a record costs to make: the request line makes one per request.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def count_statements(engine: AsyncEngine) -> None:
    """Count the SQL statements each request runs on `engine`; calling it again changes nothing."""
    if not event.contains(engine.sync_engine, "before_cursor_execute", _count_statement):
        event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)


def _count_statement(*_: Any) -> None:
    # SQLAlchemy runs the driver in a greenlet that shares the request task's context,
    # so the request's counter is visible here.
    counter = _statements.get()
    if counter is not None:
        counter[0] += 1


class RequestContextMiddleware:
    """Pure ASGI: sets the request id, echoes it in the response and logs the outcome.

    It logs no exception: `app.errors.UnhandledErrorMiddleware`, inside it, logs each one
    once with its traceback and answers the 500.
    """

    def __init__(self, app: ASGIApp, *, log_statements: bool = False) -> None:
        self.app = app
        self.log_statements = log_statements

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # 128 random bits as 32 hex digits, without uuid4()'s system call for each: the
        # generator is seeded from the OS, and again in each forked worker. Their bytes in
        # hex take a third of the time of formatting the number.
        request_id = _incoming_request_id(scope) or random.getrandbits(128).to_bytes(16).hex()
        # The error handlers read the id from the request's state.
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client gets if the app raises before responding
        response_complete = False
        client_gone = False

        async def receive_wrapper() -> Message:
            nonlocal client_gone
            message = await receive()
            # Servers also answer `http.disconnect` once the response is complete.
            if message["type"] == "http.disconnect" and not response_complete:
                client_gone = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_complete, client_gone
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _with_request_id(message.get("headers", ()), request_id)
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Set before sending: the server may wake a receive() waiting for the
                # disconnect while this last send is still writing.
                response_complete = True
            try:
                await send(message)
            except OSError:
                client_gone = True  # ASGI 2.4 servers report a disconnect by failing send()
                raise

        started = time.perf_counter()
        counter = [0]
        id_token = _request_id.set(request_id)
        counter_token = _statements.set(counter)
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except ClientDisconnect:
            client_gone = True
            raise
        finally:
            if client_gone:
                status = 499  # nginx's code for a client that left before the response ended
            fields: dict[str, Any] = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            if self.log_statements:
                fields["sql_statements"] = counter[0]
            if logger.isEnabledFor(logging.INFO):
                _log_request_line(fields)
            _statements.reset(counter_token)
            _request_id.reset(id_token)


def _log_request_line(fields: dict[str, Any]) -> None:
    handler = _sole_json_handler()
    if handler is not None:
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
        try:
            line = formatter.format_request_line(time.time(), fields)
        except Exception:  # a value the template cannot spell: logging reports or writes it
            pass
        else:
            handler.write_line(line)
            return
    args = (fields["method"], fields["path"], fields["status"])
    logger.handle(_request_line(args, fields))


def _sole_json_handler() -> BatchingStreamHandler | None:
    """configure_logging()'s handler, when the request line would reach it and no other
    handler, filter or record factory: then the line is written without a record.

    Anything added to the logging configuration (pytest's log capture, the tracing
    filter that adds `trace_id`, a handler of the app's own) makes this None, and the
    line goes through `logging` as any other."""
    if logger.filters or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not logging.root:
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    root = logging.root
    if root.filters or len(root.handlers) != 1:
        return None
    (handler,) = root.handlers
    if (
        type(handler) is not BatchingStreamHandler
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) is not JsonFormatter
    ):
        return None
    return handler


def _request_line(args: tuple[Any, ...], fields: dict[str, Any]) -> logging.LogRecord:
    """The record of a request's log line: what `logger.info` would make, for less.

    logger.info() searches the call stack for the caller's file and line, and
    LogRecord() splits the file's path and looks up the thread and process, each time;
    all of it is the same on every request, so it is copied from a record made once.
    A record factory of the app's own (`logging.setLogRecordFactory`) still makes them.
    """
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return logger.makeRecord(
            logger.name, logging.INFO, __file__, 0, _REQUEST_MESSAGE, args, None, extra=fields
        )
    record = logging.LogRecord.__new__(logging.LogRecord)
    attributes = vars(record)
    attributes.update(_REQUEST_LINE)
    now = time.time()
    attributes["created"] = now
    attributes["msecs"] = int((now - int(now)) * 1000) + 0.0
    attributes["relativeCreated"] = (now - _LOGGING_STARTED) * 1000
    attributes["args"] = args
    attributes.update(fields)
    return record


def _with_request_id(headers: Iterable[tuple[bytes, bytes]], request_id: str) -> list[Any]:
    """A response's raw headers with `request_id` as its X-Request-ID, in place of one the
    app set (the error responses do); a new list, as the app may send the same one again.

    Starlette's MutableHeaders did the same for twice the instructions (11,000, a sixth of
    the middleware's), and missed an X-Request-ID the app had spelled in capitals."""
    kept = [header for header in headers if header[0].lower() != _REQUEST_ID_NAME]
    kept.append((_REQUEST_ID_NAME, request_id.encode("latin-1")))
    return kept


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None
