"""The request's context: an id on every request, one log line per request, SQL counts.

`RequestContextMiddleware` takes the id from the `X-Request-ID` header (or makes one),
echoes it in the response, and logs one line per request. Every log line written while
the request runs carries the id, so one grep finds everything a request did. A client
that left before the response was complete is logged as 499, whatever the app sent. With
`count_statements(engine)` installed (the app does it in debug mode), that line also
says how many SQL statements the request ran, which is how N+1 query patterns show up.
"""

import logging
import re
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.logs import request_id

__all__ = ["REQUEST_ID_HEADER", "RequestContextMiddleware", "count_statements"]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode("latin-1")  # as ASGI spells header names
# A caller's id is echoed into logs and headers, so only a plain token is accepted;
# anything else (too long, spaces, control characters) is replaced by a fresh id.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_statements: ContextVar[list[int] | None] = ContextVar("sql_statements", default=None)

logger = logging.getLogger("app.requests")
_LINE = "%s %s %s"  # method, path, status


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

    It logs no exception: `app.web.errors.UnhandledErrorMiddleware`, inside it, logs each
    one once with its traceback and answers the 500.
    """

    def __init__(self, app: ASGIApp, *, log_statements: bool = False) -> None:
        self.app = app
        self.log_statements = log_statements

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        this_request = _incoming_request_id(scope) or uuid.uuid4().hex
        # The error handlers read the id from the request's state.
        scope.setdefault("state", {})["request_id"] = this_request
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
                message["headers"] = _with_request_id(message.get("headers", ()), this_request)
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
        id_token = request_id.set(this_request)
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
                # On the record itself, for a handler that formats it after the request
                # (pytest's log capture, say); lines formatted as they are logged read it
                # from the context.
                "request_id": this_request,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            if self.log_statements:
                fields["sql_statements"] = counter[0]
            if logger.isEnabledFor(logging.INFO):
                # Made with makeRecord(), not info(): the caller's file and line, which
                # info() looks up on the stack for every record, are always this line.
                args = (scope["method"], scope["path"], status)
                line = logger.makeRecord(
                    logger.name, logging.INFO, "", 0, _LINE, args, None, extra=fields
                )
                logger.handle(line)
            _statements.reset(counter_token)
            request_id.reset(id_token)


def _with_request_id(headers: Iterable[tuple[bytes, bytes]], request_id: str) -> list[Any]:
    """A response's raw headers with `request_id` as its X-Request-ID, in place of one the
    app set (the error responses do), whatever its case; a new list, as the app may send
    the same one again."""
    kept = [header for header in headers if header[0].lower() != _REQUEST_ID_NAME]
    kept.append((_REQUEST_ID_NAME, request_id.encode("latin-1")))
    return kept


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_NAME:
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None
