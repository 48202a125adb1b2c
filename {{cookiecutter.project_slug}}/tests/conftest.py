"""Shared fixtures: databases for the test session, and a transaction for every test.

The suite runs on an SQLite file by default. Set TEST_DATABASE_URL to a server URL
(postgresql://... or mysql://...) to run it there; each session, and each xdist
worker, then gets databases of its own that are dropped at the end.

- `database_url`: an empty database, for tests that build their own tables.
- `database_urls`: one database per entry of alembic.ini ("main", and "audit" when
  the project has it), built by running the migrations, so every run tests them.
- `connections`: per database, a connection with a transaction open for one test and
  rolled back after it. `app` runs every session on these connections, inside a
  SAVEPOINT (`join_transaction_mode="create_savepoint"`), so a route that commits
  still leaves nothing behind, and the test sees what the app wrote.
- `client`: an httpx client talking to `app` in-process, with the lifespan running.
- `scratch_engine` / `scratch_sessions`: the tables of `tests/scratch.py` on
  `database_url`, for tests of the layer's models, mixins and listeners that must work
  in every variant; they commit for real, each under a `handle` of its own.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import URL, Connection, event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app.databases import pgbouncer_engine_args
from app.db import create_engine, create_session_factory
from app.main import create_app
from app.ops.migrate import alembic_config, databases, target_metadata, upgrade
from app.settings import Settings
from tests.scratch import METADATAS

ASYNC_DRIVERS = {"postgresql": "asyncpg", "mysql": "aiomysql"}
RUNNING_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def _server_url(variable: str) -> URL | None:
    raw = os.environ.get(variable)
    if not raw:
        return None
    url = make_url(raw)
    backend = url.get_backend_name().replace("mariadb", "mysql")
    if backend not in ASYNC_DRIVERS:
        raise pytest.UsageError(
            f"{variable} must name a PostgreSQL or MySQL server, not {backend!r}; "
            "leave it unset to test on SQLite."
        )
    return url.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}")


SERVER_URL = _server_url("TEST_DATABASE_URL")
BACKEND = "sqlite" if SERVER_URL is None else SERVER_URL.get_backend_name()
# With DATABASE_POOLER=pgbouncer, TEST_DATABASE_URL leads to PgBouncer in transaction
# mode, and the tests' own engines need the options the app's engines get behind it.
# CREATE and DROP DATABASE cannot run in a transaction, so not through PgBouncer
# either: they go to TEST_DATABASE_DIRECT_URL, the server itself.
ADMIN_URL = _server_url("TEST_DATABASE_DIRECT_URL") or SERVER_URL
# Taken out of the environment, so that the tests that build Settings of their own (on
# SQLite, say) don't inherit it; the `settings` fixture passes it on.
BEHIND_PGBOUNCER = os.environ.pop("DATABASE_POOLER", "none") == "pgbouncer"
POOLER_ARGS = pgbouncer_engine_args() if BEHIND_PGBOUNCER else {}
# For the tests' engines that keep a pool of their own, to count what it lends.
POOLER_CONNECT_ARGS: dict[str, Any] = POOLER_ARGS.get("connect_args", {})


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgresql") and BACKEND != "postgresql":
        reason = "needs PostgreSQL: set TEST_DATABASE_URL=postgresql://user@host/db"
        if RUNNING_IN_CI:
            pytest.fail(f"{reason} (CI is set, so this test may not be skipped)", pytrace=False)
        pytest.skip(reason)
    direct = item.get_closest_marker("direct_connection")
    if direct and BEHIND_PGBOUNCER:
        pytest.skip(f"needs a direct connection to the server, not PgBouncer: {direct.args[0]}")


@asynccontextmanager
async def _new_database(tmp_path_factory: pytest.TempPathFactory, label: str) -> AsyncIterator[str]:
    """The async URL of a new, empty database, dropped when the block ends."""
    if SERVER_URL is None:
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / f'{label}.db'}"
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{SERVER_URL.database or 'test'}_{label}_{worker}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(
        ADMIN_URL or SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {name}"))
        yield SERVER_URL.set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            force = " WITH (FORCE)" if BACKEND == "postgresql" else ""
            await connection.execute(text(f"DROP DATABASE {name}{force}"))
    finally:
        await admin.dispose()


def direct(url: str) -> URL:
    """`url`'s database on the server itself: where migrations go, around PgBouncer."""
    if ADMIN_URL is None:
        return make_url(url)
    return ADMIN_URL.set(database=make_url(url).database)


@pytest.fixture(scope="session")
def backend() -> str:
    return BACKEND


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """An async URL of an empty database that belongs to this session alone."""
    async with _new_database(tmp_path_factory, "test") as url:
        yield url


@pytest.fixture(scope="session")
async def database_urls(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    """Each database of alembic.ini by name, migrated to head in a database of its own."""
    async with AsyncExitStack() as stack:
        urls = {}
        for name in databases():
            url = await stack.enter_async_context(_new_database(tmp_path_factory, name))
            engine = create_engine(url, {**POOLER_ARGS, "poolclass": NullPool})
            try:
                await upgrade(engine, database=name)
            finally:
                await engine.dispose()
            urls[name] = url
        yield urls


@pytest.fixture(scope="session")
async def engines(database_urls: dict[str, str]) -> AsyncIterator[dict[str, AsyncEngine]]:
    """The tests' own engines on the migrated databases; each test borrows a connection."""
    engines = {name: create_engine(url, POOLER_ARGS) for name, url in database_urls.items()}
    for engine in engines.values():
        if engine.dialect.name == "sqlite":
            _let_sqlite_nest_transactions(engine)
    yield engines
    for engine in engines.values():
        await engine.dispose()


@pytest.fixture
async def connections(engines: dict[str, AsyncEngine]) -> AsyncIterator[dict[str, AsyncConnection]]:
    """Per database, a connection in a transaction that is rolled back after the test."""
    async with AsyncExitStack() as stack:
        connections = {}
        for name, engine in engines.items():
            connection = await stack.enter_async_context(engine.connect())
            transaction = await connection.begin()
            stack.push_async_callback(transaction.rollback)
            connections[name] = connection
        yield connections


@pytest.fixture
async def session(
    engines: dict[str, AsyncEngine], connections: dict[str, AsyncConnection]
) -> AsyncIterator[AsyncSession]:
    """A session in the test's transaction, for arranging data and checking what the app did.

    It is made like the app's own (soft-deleted rows hidden), but joins the test's transaction.
    """
    options = {"bind": connections["main"], "join_transaction_mode": "create_savepoint"}
    async with create_session_factory(engines["main"], options)() as session:
        yield session


@pytest.fixture(scope="module")
async def scratch_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on `database_url` with the scratch tables, dropped when the module ends."""
    engine = create_engine(database_url, POOLER_ARGS)
    async with engine.begin() as connection:
        for metadata in METADATAS:
            await connection.run_sync(metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            for metadata in METADATAS:
                await connection.run_sync(metadata.drop_all)
        await engine.dispose()


@pytest.fixture
def scratch_sessions(scratch_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions made the layer's way on the scratch tables; they commit for real."""
    return create_session_factory(scratch_engine)


@pytest.fixture
def handle() -> str:
    """A scratch member handle no other test uses."""
    return f"member-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(database_urls: dict[str, str]) -> Settings:
    # Any, not str: mypy checks a `**` dict's value type against every keyword Settings takes.
    urls: dict[str, Any] = {_url_setting(name): url for name, url in database_urls.items()}
    if BEHIND_PGBOUNCER:
        urls["database_pooler"] = "pgbouncer"
    return Settings(**urls, secret_key="test-secret")


@pytest.fixture
def app(settings: Settings, connections: dict[str, AsyncConnection]) -> FastAPI:
    """The app, with every session joined to the test's transaction."""
    joined = {name: _joined(connection, name) for name, connection in connections.items()}
    return create_app(settings, session_args=joined)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that talks to the app in-process, with its lifespan running.

    App exceptions become the 500 response a real server would send, not test errors.
    """
    async with serve(app) as client:
        yield client


@pytest.fixture
def make_live_app(settings: Settings) -> Callable[..., FastAPI]:
    """Apps on their own engines and pools that commit for real, for tests about pools.

    Keywords override settings. Whatever such a test commits, it must remove.
    """

    def make(**overrides: Any) -> FastAPI:
        return create_app(settings.model_copy(update=overrides))

    return make


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run `app`'s lifespan and yield a client for it; for tests that build their own app."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def terminate_backend(connection: AsyncConnection, pid: int) -> None:
    """End PostgreSQL backend `pid`, as a restart or an operator would, and wait until it is gone.

    The wait is the server's own (`pg_terminate_backend`'s timeout): polling
    pg_stat_activity inside one transaction would keep seeing its first snapshot.
    """
    ended = await connection.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    assert ended, f"backend {pid} was still running 5 s after pg_terminate_backend"


def _url_setting(database: str) -> str:
    """The Settings field that holds `database`'s URL, as alembic.ini names it."""
    return alembic_config(database).get_main_option("database_url_setting") or "database_url"


def _joined(connection: AsyncConnection, database: str) -> dict[str, Any]:
    """Session options that put the database's tables on `connection`, in a SAVEPOINT."""
    tables = target_metadata(alembic_config(database)).tables.values()
    return {
        "binds": dict.fromkeys(tables, connection),
        "join_transaction_mode": "create_savepoint",
        "expire_on_commit": False,
    }


def _let_sqlite_nest_transactions(engine: AsyncEngine) -> None:
    # The sqlite3 module starts and ends transactions on its own, which breaks
    # SAVEPOINTs inside an outer transaction; let SQLAlchemy emit BEGIN itself.
    @event.listens_for(engine.sync_engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")
