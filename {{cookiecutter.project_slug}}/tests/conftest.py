"""Shared fixtures: a fresh database for each test session, and the app wired to it.

The suite runs on an SQLite file by default. Set TEST_DATABASE_URL to a server URL
(postgresql://... or mysql://...) to run it there; each session, and each xdist
worker, then gets a database of its own that is dropped at the end.
"""

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.main import create_app
from app.settings import Settings

ASYNC_DRIVERS = {"postgresql": "asyncpg", "mysql": "aiomysql"}
RUNNING_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def _server_url() -> URL | None:
    raw = os.environ.get("TEST_DATABASE_URL")
    if not raw:
        return None
    url = make_url(raw)
    backend = url.get_backend_name().replace("mariadb", "mysql")
    if backend not in ASYNC_DRIVERS:
        raise pytest.UsageError(
            f"TEST_DATABASE_URL must name a PostgreSQL or MySQL server, not {backend!r}; "
            "leave it unset to test on SQLite."
        )
    return url.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}")


SERVER_URL = _server_url()
BACKEND = "sqlite" if SERVER_URL is None else SERVER_URL.get_backend_name()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgresql") and BACKEND != "postgresql":
        reason = "needs PostgreSQL: set TEST_DATABASE_URL=postgresql://user@host/db"
        if RUNNING_IN_CI:
            pytest.fail(f"{reason} (CI is set, so this test may not be skipped)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def backend() -> str:
    return BACKEND


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """An async URL of an empty database that belongs to this session alone."""
    if SERVER_URL is None:
        path: Path = tmp_path_factory.mktemp("db") / "test.db"
        yield f"sqlite+aiosqlite:///{path}"
        return

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{SERVER_URL.database or 'test'}_{worker}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {name}"))
        yield SERVER_URL.set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            force = " WITH (FORCE)" if BACKEND == "postgresql" else ""
            await connection.execute(text(f"DROP DATABASE {name}{force}"))
    finally:
        await admin.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key="test-secret")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that talks to the app in-process, with its lifespan running."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
