"""The service's errors and the handlers that turn every failure into one JSON shape.

Every error response has the same body, so clients parse one format:

    {"error": {"code": "not_found", "message": "...", "request_id": "..."}}

Validation errors add `"details"`, a list of `{"field", "message"}`. The codes are
stable; the messages are for people. Nothing from the exception itself reaches the
client of a 500: no traceback, no SQL, no connection string. `UnhandledErrorMiddleware`
answers what no handler took and keeps the exception inside the app, so the 500 is
logged once and the client's keep-alive connection stays usable.

    ServiceError            raise it from a route; carries the status and code
     ├── NotFoundError      404 not_found
     └── ConflictError      409 conflict
"""

import logging
from collections.abc import Mapping
from contextlib import suppress
from http import HTTPStatus
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, NoResultFound
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import CapacityError, DatabaseUnavailableError
from app.observability.requests import REQUEST_ID_HEADER

__all__ = [
    "RETRY_AFTER_SECONDS",
    "ConflictError",
    "NotFoundError",
    "ServiceError",
    "UnhandledErrorMiddleware",
    "error_response",
    "install_error_handlers",
    "is_unique_violation",
]

logger = logging.getLogger(__name__)

# How long a client should wait after a 503: every pooled connection was busy, or the
# database could not be reached.
RETRY_AFTER_SECONDS = 5

# How each backend reports a unique (or primary key) violation.
_UNIQUE_SQLSTATE = "23505"  # PostgreSQL
_MYSQL_DUPLICATE_ENTRY = 1062
_SQLITE_UNIQUE_CODES = {1555, 2067}  # SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE


class ServiceError(Exception):
    """An error the client caused or must know about; the message is shown to them."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


def is_unique_violation(exc: IntegrityError) -> bool:
    """Whether the database refused a row because a unique key already exists."""
    original: Any = exc.orig
    if getattr(original, "sqlstate", None) == _UNIQUE_SQLSTATE:
        return True
    if getattr(original, "sqlite_errorcode", None) in _SQLITE_UNIQUE_CODES:
        return True
    args: tuple[Any, ...] = getattr(original, "args", ())
    return bool(args) and args[0] == _MYSQL_DUPLICATE_ENTRY


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error shape, with the request id for the logs."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    request_id = getattr(request.state, "request_id", None)
    body["request_id"] = request_id
    if request_id is not None:
        # A 500 is sent from outside every middleware, so the header is set here too.
        headers = {**(headers or {}), REQUEST_ID_HEADER: request_id}
    return JSONResponse({"error": body}, status_code=status_code, headers=dict(headers or {}))


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    return error_response(request, exc.status_code, exc.code, exc.message)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    status = HTTPStatus(exc.status_code)
    code = status.phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else status.description
    return error_response(request, exc.status_code, code, message, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The offending input is left out on purpose: it may be a password or a token.
    details = [
        {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors()
    ]
    message = "The request is not valid; `details` lists each problem."
    return error_response(request, 422, "validation_error", message, details=details)


async def _no_result(request: Request, exc: NoResultFound) -> JSONResponse:
    return error_response(request, 404, "not_found", "Nothing exists at this address.")


async def _integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
    if is_unique_violation(exc):
        message = "Another record already uses one of these unique values."
        return error_response(request, 409, "conflict", message)
    logger.error("the database refused a write", exc_info=exc)
    return await _unhandled(request, exc)


async def _no_connection(
    request: Request, exc: CapacityError | sqlalchemy.exc.TimeoutError
) -> JSONResponse:
    # The layer's engines raise PoolTimeoutError, a CapacityError, when the pool stays
    # full for its whole timeout; an engine made elsewhere raises SQLAlchemy's own.
    logger.warning("no database connection for the request: %s", exc)
    return _retry_later(request, "database_busy", "The service is busy")


async def _database_unavailable(request: Request, exc: DatabaseUnavailableError) -> JSONResponse:
    # Not a bug of the service's: one line for the operator, no traceback per request.
    logger.warning("the database is unavailable, answering 503: %s", exc)
    return _retry_later(request, "database_unavailable", "The database is unavailable")


async def _database_error(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
    if not exc.connection_invalidated:
        raise exc  # the statement's own fault: the 500 of UnhandledErrorMiddleware
    # The server or the network ended the connection mid-statement (a restart, a
    # failover, an operator). Its transaction ended with it, so nothing of the request
    # was written and a retry is safe. A connection lost during COMMIT fails in the
    # session middleware instead, where the outcome is unknown: that stays a 500.
    logger.warning("the connection to the database was lost, answering 503: %s", exc.orig)
    return _retry_later(request, "database_unavailable", "The database is unavailable")


def _retry_later(request: Request, code: str, why: str) -> JSONResponse:
    """The 503 of a database the request could not use now, and when to try again."""
    message = f"{why}; retry after the number of seconds in Retry-After."
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return error_response(request, 503, code, message, headers=headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The traceback is in the log, under the same request id; the client gets the id.
    message = "An unexpected error occurred. Quote the request id when reporting it."
    return error_response(request, 500, "internal_error", message)


class UnhandledErrorMiddleware:
    """Pure ASGI: logs an exception no handler took, once, and answers it with the 500.

    Starlette's ServerErrorMiddleware sends its 500 and then re-raises, and a server
    closes the keep-alive connection of an app that raised, so the client's next request
    on it failed too. Here the exception ends. A response that has already started
    cannot become a 500; the server then closes the connection, the only honest end of
    a half-sent body. A client that left is not an error: nothing is logged or sent, and
    `RequestContextMiddleware` logs the request as 499.

    Add it inside `RequestContextMiddleware`, whose request id the log line and the body
    carry, and outside the session middlewares, which roll back before it runs and whose
    failed commit it turns into the 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        response_started = False
        client_gone = False

        async def send_wrapper(message: Message) -> None:
            nonlocal response_started, client_gone
            if message["type"] == "http.response.start":
                response_started = True
            try:
                await send(message)
            except OSError:
                client_gone = True  # ASGI 2.4 servers report a disconnect by failing send()
                raise

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            return
        except Exception as exc:
            if client_gone:
                return
            logger.exception("unhandled error")
            if not response_started:
                response = await _unhandled(Request(scope), exc)
                with suppress(OSError):  # the client may have left in the meantime
                    await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; `Exception` covers whatever nothing else handled."""
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(NoResultFound)(_no_result)
    app.exception_handler(IntegrityError)(_integrity_error)
    app.exception_handler(CapacityError)(_no_connection)
    app.exception_handler(DatabaseUnavailableError)(_database_unavailable)
    app.exception_handler(sqlalchemy.exc.DBAPIError)(_database_error)
    app.exception_handler(sqlalchemy.exc.TimeoutError)(_no_connection)
    app.exception_handler(Exception)(_unhandled)
