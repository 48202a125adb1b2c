"""PostgreSQL enforces the settings' time limits on the app's connections, so no bug pins one."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.postgresql

LIMITS = text(
    "SELECT name, setting FROM pg_settings"
    " WHERE name IN ('statement_timeout', 'idle_in_transaction_session_timeout')"
)


@asynccontextmanager
async def app_engines(app: FastAPI) -> AsyncIterator[dict[str, AsyncEngine]]:
    """The app's own engines, disposed afterwards (no lifespan runs to do it)."""
    engines: dict[str, AsyncEngine] = app.state.engines
    try:
        yield engines
    finally:
        for engine in engines.values():
            await engine.dispose()


async def test_every_connection_of_the_app_carries_the_limits_in_the_settings(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(database_statement_timeout=12.5, database_idle_in_transaction_timeout=3)
    async with app_engines(app) as engines:
        for engine in engines.values():
            async with engine.connect() as connection:
                rows = (await connection.execute(LIMITS)).all()

            assert dict(rows) == {  # both in milliseconds
                "statement_timeout": "12500",
                "idle_in_transaction_session_timeout": "3000",
            }


async def test_a_statement_that_runs_too_long_is_cancelled(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(database_statement_timeout=0.2)
    async with app_engines(app) as own, own["main"].connect() as connection:
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="statement timeout"):
            await connection.execute(text("SELECT pg_sleep(5)"))


async def test_a_connection_left_idle_in_a_transaction_is_ended_by_the_server(
    make_live_app: Callable[..., FastAPI], engines: dict[str, AsyncEngine]
) -> None:
    app = make_live_app(database_idle_in_transaction_timeout=0.3)
    async with app_engines(app) as own, own["main"].connect() as connection:
        pid = await connection.scalar(text("SELECT pg_backend_pid()"))  # opens a transaction
        await asyncio.sleep(1)  # a bug that forgets the transaction

        with pytest.raises(sqlalchemy.exc.DBAPIError):
            await connection.execute(text("SELECT 1"))

    # The backend exits right after it sends the error; each look is a new transaction,
    # since pg_stat_activity stays one snapshot for the length of a transaction.
    alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    for _ in range(100):
        async with engines["main"].connect() as observer:
            if await observer.scalar(alive, {"pid": pid}) == 0:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"backend {pid} still runs 5 s after the server ended its transaction")
