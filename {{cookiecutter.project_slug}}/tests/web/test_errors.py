"""Every error has one JSON shape, a 500 gives nothing away, and it ends inside the app."""

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from starlette.types import Message

from app.db import db
from app.observability.logs import JsonFormatter, hide_row_values
from app.web.errors import RETRY_AFTER_SECONDS, ConflictError
from tests.asgi import http_scope
from tests.conftest import serve
from tests.pools import COUNTS_THE_APPS_POOL, queue_pool

SECRET = "s3cret-password"


def add_probe_routes(app: FastAPI) -> None:
    """Routes that fail in the ways the handlers must cover."""

    @app.get("/probe/query")
    async def query(n: int) -> dict[str, int]:
        await db.session.execute(text("SELECT 1"))
        return {"n": n}

    @app.get("/probe/bad-sql")
    async def bad_sql() -> None:
        await db.session.execute(text("SELECT secret_column FROM no_such_table"))

    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError(f"cannot reach postgresql://app:{SECRET}@db:5432/app")

    @app.get("/probe/conflict")
    async def conflict() -> None:
        raise ConflictError("That name is taken.")

    @app.get("/probe/no-result")
    async def no_result() -> None:
        # scalar_one() raises NoResultFound, which Model.get_one() raises too.
        (await db.session.execute(text("SELECT 1 WHERE 1 = 0"))).scalar_one()


async def test_an_unknown_path_is_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/path")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "Not Found",
            "request_id": response.headers["X-Request-ID"],
        }
    }


async def test_a_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health/live")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_invalid_input_is_422_naming_the_field_without_echoing_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)

    response = await client.get("/probe/query", params={"n": SECRET})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["query.n"]
    assert SECRET not in response.text


async def test_a_service_error_keeps_its_status_and_message(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)

    response = await client.get("/probe/conflict")

    assert response.status_code == 409
    assert response.json()["error"]["message"] == "That name is taken."


async def test_no_result_found_is_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    add_probe_routes(app)

    response = await client.get("/probe/no-result")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_an_unhandled_error_is_500_without_internals(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)

    for path in ("/probe/crash", "/probe/bad-sql"):
        response = await client.get(path)

        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "internal_error"
        assert error["request_id"] == response.headers["X-Request-ID"]
        for leak in (SECRET, "postgresql://", "no_such_table", "SELECT", "Traceback"):
            assert leak not in response.text


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
async def test_a_pool_timeout_is_503_with_retry_after(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(database_pool_size=1, database_max_overflow=0, database_pool_timeout=0.1)
    add_probe_routes(app)
    engine: AsyncEngine = app.state.engines["main"]

    async with serve(app) as client:
        async with engine.connect():  # the pool's only connection
            busy = await client.get("/probe/query", params={"n": 1})
        # Once the connection is back, the same request succeeds.
        after = await client.get("/probe/query", params={"n": 1})

    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert busy.json()["error"]["code"] == "database_busy"
    assert after.status_code == 200
    assert queue_pool(engine).checkedout() == 0


async def test_sqlalchemys_own_pool_timeout_is_503_too(app: FastAPI) -> None:
    # An engine that create_engine() did not make (a team's own custom_engine) raises
    # SQLAlchemy's TimeoutError rather than PoolTimeoutError; the answer is the same.
    @app.get("/probe/foreign-pool")
    async def foreign_pool() -> None:
        raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached")

    async with serve(app) as client:
        response = await client.get("/probe/foreign-pool")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["error"]["code"] == "database_busy"


async def call(app: FastAPI, path: str) -> tuple[Message, bytes]:
    """Serve `GET path` as a server would, below the HTTP client: the app must not raise.

    A server closes the keep-alive connection of an app that raised, even after a
    complete 500, so the client's next request on that connection would fail too.
    """
    sent: list[Message] = []
    request: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        return request.pop() if request else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async with LifespanManager(app) as manager:
        await manager.app(http_scope(path), receive, send)
    start, *bodies = sent
    return start, b"".join(message.get("body", b"") for message in bodies)


class _JsonLines(logging.Handler):
    """Keeps each record as the app's JSON line, formatted while it is logged, as the
    app's own handler does: the request id is only set while the request runs."""

    def __init__(self) -> None:
        super().__init__()
        # Not set as this handler's formatter: configure_logging() would replace the handler.
        self.json = JsonFormatter()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.json.format(record)))


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """The JSON lines logged during the test."""
    handler = _JsonLines()
    logging.getLogger().addHandler(handler)
    try:
        yield handler.lines
    finally:
        logging.getLogger().removeHandler(handler)


def exceptions_in(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "exception" in line]


def _refuse_commit(session: Session) -> None:
    raise RuntimeError("the database refused the commit")


async def test_an_unhandled_error_is_answered_and_logged_once_inside_the_app(
    app: FastAPI, logged: list[dict[str, Any]]
) -> None:
    add_probe_routes(app)

    start, body = await call(app, "/probe/crash")

    assert start["status"] == 500
    request_id = dict(start["headers"])[b"x-request-id"].decode()
    assert json.loads(body)["error"]["request_id"] == request_id
    [error] = exceptions_in(logged)
    assert error["request_id"] == request_id
    assert "RuntimeError" in error["exception"]


async def test_a_failed_commit_is_a_500_answered_inside_the_app(
    app: FastAPI, logged: list[dict[str, Any]]
) -> None:
    @app.get("/probe/commit-fails")
    async def commit_fails() -> dict[str, str]:
        await db.session.execute(text("SELECT 1"))
        event.listen(db.session.sync_session, "before_commit", _refuse_commit)
        return {"saved": "yes"}

    start, body = await call(app, "/probe/commit-fails")

    assert start["status"] == 500  # never the route's 200 for a write that was lost
    assert json.loads(body)["error"]["code"] == "internal_error"
    [error] = exceptions_in(logged)
    assert "the database refused the commit" in error["exception"]


async def test_debug_mode_answers_a_500_with_the_same_plain_body(
    make_live_app: Callable[..., FastAPI], logged: list[dict[str, Any]]
) -> None:
    app = make_live_app(debug=True)
    add_probe_routes(app)

    async with serve(app) as client:
        response = await client.get("/probe/crash", headers={"Accept": "text/html"})

    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "An unexpected error occurred. Quote the request id when reporting it.",
            "request_id": response.headers["X-Request-ID"],
        }
    }
    [error] = exceptions_in(logged)  # the traceback stays in the log
    assert "RuntimeError" in error["exception"]


async def test_a_failed_statement_shows_its_sql_but_no_parameter_values(
    make_live_app: Callable[..., FastAPI], logged: list[dict[str, Any]]
) -> None:
    # The app's own engines, not the test's: they are the ones that must hide values.
    app = make_live_app()

    @app.get("/probe/bad-sql-with-a-value")
    async def bad_sql_with_a_value() -> None:
        statement = text("SELECT name FROM no_such_table WHERE password = :password")
        await db.session.execute(statement, {"password": SECRET})

    async with serve(app) as client:
        response = await client.get("/probe/bad-sql-with-a-value")

    assert response.status_code == 500
    [error] = exceptions_in(logged)
    assert "no_such_table" in error["exception"]  # enough to find the failing statement
    assert SECRET not in json.dumps(logged) + response.text


async def test_row_values_the_database_quotes_stay_out_of_the_log(
    make_live_app: Callable[..., FastAPI], logged: list[dict[str, Any]]
) -> None:
    # PostgreSQL quotes the refused row in its DETAIL line, which hide_parameters cannot
    # reach; a CHECK violation is logged by the IntegrityError handler with its traceback.
    app = make_live_app()

    @app.get("/probe/refused-row")
    async def refused_row() -> None:
        await db.session.execute(
            text("CREATE TEMPORARY TABLE probe_checked (value VARCHAR(50) CHECK (value = 'ok'))")
        )
        await db.session.execute(
            text("INSERT INTO probe_checked VALUES (:value)"), {"value": SECRET}
        )

    async with serve(app) as client:
        response = await client.get("/probe/refused-row")

    assert response.status_code == 500
    assert exceptions_in(logged)  # the failure is logged, with its traceback
    assert SECRET not in json.dumps(logged) + response.text


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            'duplicate key value violates unique constraint "uq_users_email"\n'
            "DETAIL:  Key (email)=(ann@example.com) already exists.",
            'duplicate key value violates unique constraint "uq_users_email"\n'
            "DETAIL: [row values hidden]",
        ),
        (
            "(1062, \"Duplicate entry 'ann@example.com' for key 'uq_users_email'\")",
            "(1062, \"Duplicate entry [hidden] for key 'uq_users_email'\")",
        ),
        ("UNIQUE constraint failed: users.email", "UNIQUE constraint failed: users.email"),
    ],
)
def test_each_backends_quoted_values_are_hidden(message: str, shown: str) -> None:
    assert hide_row_values(message) == shown
