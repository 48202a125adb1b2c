"""Every error has one JSON shape, and a 500 gives nothing away."""

from collections.abc import Callable

import httpx
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import db
from app.errors import RETRY_AFTER_SECONDS, ConflictError
from tests.conftest import serve
from tests.pools import queue_pool

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
