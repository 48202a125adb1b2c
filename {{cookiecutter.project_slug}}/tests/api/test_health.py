"""Liveness touches no database; readiness pings each one and names any that fails."""

from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.routes.health import _ping
from app.db import create_engine
from tests.conftest import serve


async def test_live_reports_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_live_needs_no_free_connection(make_live_app: Callable[..., FastAPI]) -> None:
    app = make_live_app(database_pool_size=1, database_max_overflow=0)
    engine: AsyncEngine = app.state.engines["main"]
    async with serve(app) as client, engine.connect():
        response = await client.get("/health/live")

    assert response.status_code == 200


async def test_ready_pings_every_database(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "databases": dict.fromkeys(app.state.engines, "ok"),
    }


async def test_ready_is_503_naming_a_database_whose_pool_is_exhausted(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(
        database_pool_size=1,
        database_max_overflow=0,
        database_pool_timeout=5,
        health_check_timeout=0.2,
    )
    engine: AsyncEngine = app.state.engines["main"]
    async with serve(app) as client, engine.connect():
        response = await client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["databases"]["main"] == "pool exhausted: every connection is in use"


async def test_a_database_that_cannot_be_reached_is_reported_without_details(
    tmp_path: Path,
) -> None:
    # A file in a folder that does not exist: SQLite cannot open it, as if the disk were gone.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'app.db'}")
    try:
        assert await _ping(engine, deadline=2) == "unreachable (OperationalError)"
    finally:
        await engine.dispose()
