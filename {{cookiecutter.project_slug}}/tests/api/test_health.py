"""Liveness touches no database; readiness names each database that cannot serve, and why.

The service starts whatever state its databases are in: one that is down, behind or
ahead of the migrations makes /health/ready answer 503 until it is fixed, with no restart.
"""

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from app.db import create_engine, db
from app.main import create_app
from app.ops.migrate import alembic_config, databases, upgrade
from app.ops.readiness import Readiness
from app.settings import Settings
from tests.conftest import serve, terminate_backend
from tests.pools import COUNTS_THE_APPS_POOL

SECRET_PASSWORD = "never-shown-s3cret"


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


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
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
        states = await Readiness({"main": engine}, deadline=2).check()
    finally:
        await engine.dispose()

    assert states == {"main": "unreachable (OperationalError)"}


async def test_the_service_starts_with_its_database_down_and_is_live_but_not_ready(
    make_live_app: Callable[..., FastAPI],
    database_urls: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = unreachable_url(database_urls["main"])
    app = make_live_app(database_url=down)

    with caplog.at_level(logging.INFO, logger="app"):
        async with serve(app) as client:
            live = await client.get("/health/live")
            ready = await client.get("/health/ready")
            again = await client.get("/health/ready")

    assert live.status_code == 200
    assert ready.status_code == again.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["databases"]["main"].startswith("unreachable (")
    # One line when the database is found down, none per probe, and no traceback.
    not_ready = [record for record in caplog.records if "is not ready" in record.getMessage()]
    assert len(not_ready) == 1
    assert not_ready[0].levelno == logging.WARNING
    assert not_ready[0].exc_info is None
    assert "unreachable (" in not_ready[0].getMessage()
    assert "/health/ready answers 503" in not_ready[0].getMessage()


async def test_a_database_behind_its_migrations_is_ready_once_migrated_without_a_restart(
    settings: Settings, tmp_path: Path
) -> None:
    # Every database on a new, empty SQLite file, as after a deploy that forgot `make migrate`.
    urls = {name: f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}" for name in databases()}
    overrides: dict[str, Any] = {_url_setting(name): url for name, url in urls.items()}
    # Files, not PostgreSQL: no PgBouncer before them, whatever the suite runs through.
    overrides["database_pooler"] = "none"
    app = create_app(settings.model_copy(update=overrides))
    heads = {name: _heads(name) for name in urls}

    async with serve(app) as client:
        before = await client.get("/health/ready")
        for name, url in urls.items():
            engine = create_engine(url, {"poolclass": NullPool})
            try:
                await upgrade(engine, database=name)
            finally:
                await engine.dispose()
        after = await client.get("/health/ready")

    expected = {
        name: f"behind: at base, code expects {head}; run make migrate" if head else "ok"
        for name, head in heads.items()
    }
    assert before.json()["databases"] == expected
    # A database without any migration (no example API) is at its head when empty.
    assert before.status_code == (503 if any(heads.values()) else 200)
    assert after.status_code == 200
    assert after.json() == {"status": "ok", "databases": dict.fromkeys(urls, "ok")}


async def test_a_database_ahead_of_the_code_is_not_ready_and_says_so(
    make_live_app: Callable[..., FastAPI], database_urls: dict[str, str]
) -> None:
    app = make_live_app()
    engine = create_engine(database_urls["main"], {"poolclass": NullPool})
    original = await _set_revisions(engine, ["feedfacecafe"])
    try:
        async with serve(app) as client:
            ahead = await client.get("/health/ready")
            await _set_revisions(engine, original)
            fixed = await client.get("/health/ready")
    finally:
        await _set_revisions(engine, original)
        await engine.dispose()

    assert ahead.status_code == 503
    assert ahead.json()["databases"]["main"] == (
        "ahead: at feedfacecafe, which this code does not know; run the release that migrated it"
    )
    assert fixed.status_code == 200


async def test_a_database_at_head_is_not_rechecked_until_the_verdict_expires(
    database_urls: dict[str, str],
) -> None:
    engine = create_engine(database_urls["main"], {"poolclass": NullPool})
    cached = Readiness({"main": engine}, deadline=2, recheck_after=3600)
    uncached = Readiness({"main": engine}, deadline=2, recheck_after=0)
    try:
        assert await cached.check() == await uncached.check() == {"main": "ok"}
        original = await _set_revisions(engine, ["feedfacecafe"])
        try:
            assert await cached.check() == {"main": "ok"}
            assert (await uncached.check())["main"].startswith("ahead: at feedfacecafe")
        finally:
            await _set_revisions(engine, original)
    finally:
        await engine.dispose()


@pytest.mark.direct_connection(
    "the server then ends PgBouncer's server connections, which the app cannot see: "
    "PgBouncer lends the dead one to the next transaction, and checks its idle server "
    "connections only after server_check_delay"
)
async def test_requests_succeed_after_the_server_ends_the_app_connections(
    make_live_app: Callable[..., FastAPI], database_urls: dict[str, str], backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no server to end a connection: TEST_DATABASE_URL names one")
    # One pooled connection, so the one that served the first request is the one ended;
    # pre-ping stays off (the default), so no round trip finds it dead.
    app = make_live_app(database_pool_size=1, database_max_overflow=0)
    own_id = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"

    @app.get("/probe/backend")
    async def server_connection() -> int:
        connection_id: int = (await db.session.execute(text(own_id))).scalar_one()
        return connection_id

    admin = create_engine(database_urls["main"], {"poolclass": NullPool})
    try:
        async with serve(app) as client:
            first = await client.get("/probe/backend")
            async with admin.connect() as connection:
                if backend == "postgresql":
                    await terminate_backend(connection, first.json())
                else:
                    await connection.execute(text(f"KILL CONNECTION {int(first.json())}"))
            second = await client.get("/probe/backend")
            ready = await client.get("/health/ready")
    finally:
        await admin.dispose()

    assert first.status_code == 200
    assert second.status_code == 200
    assert second.json() != first.json()
    assert ready.status_code == 200


def _url_setting(database: str) -> str:
    return alembic_config(database).get_main_option("database_url_setting") or "database_url"


def _heads(database: str) -> str:
    return ", ".join(ScriptDirectory.from_config(alembic_config(database)).get_heads())


def unreachable_url(url: str) -> str:
    """`url` moved where nothing answers: a closed loopback port, or a missing folder.

    A server URL gets a password, so that tests can check it is never shown.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite+aiosqlite:///{Path(parsed.database or '.').parent / 'missing' / 'x.db'}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    moved = parsed.set(host="127.0.0.1", port=port, password=SECRET_PASSWORD)
    return moved.render_as_string(hide_password=False)


async def _set_revisions(engine: AsyncEngine, revisions: list[str]) -> list[str]:
    """Replace the revisions in alembic_version; returns the ones it held."""
    async with engine.begin() as connection:
        held = list(await connection.scalars(text("SELECT version_num FROM alembic_version")))
        await connection.execute(text("DELETE FROM alembic_version"))
        for revision in revisions:
            await connection.execute(
                text("INSERT INTO alembic_version (version_num) VALUES (:r)"), {"r": revision}
            )
    return held
