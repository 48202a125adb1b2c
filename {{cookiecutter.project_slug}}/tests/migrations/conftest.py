"""Empty databases for the migration tests, next to the session's test database.

Migrations are run up and down here, so each test gets databases of its own rather
than the shared one that other tests keep their schema in. On a server, creating a
database takes about half a second, so the few that the session creates are emptied
and handed out again (PostgreSQL: a new `public` schema; MySQL: dropped and recreated).
Behind PgBouncer they are on the server itself, where `app.ops.migrate` goes too
(DATABASE_DIRECT_URL): CREATE DATABASE cannot run in a transaction, so not through it.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_engine
from app.ops.migrate import databases
from tests.conftest import direct

NewDatabase = Callable[[], Awaitable[AsyncEngine]]


@pytest.fixture(params=databases())
def database(request: pytest.FixtureRequest) -> str:
    """Each database that has migrations: "main", and "audit" when the project has one."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
async def _server_databases(database_url: str, backend: str) -> AsyncIterator[list[str]]:
    """The names of the databases created for these tests; dropped when the session ends."""
    names: list[str] = []
    yield names
    if names:
        admin = create_engine(direct(database_url), {"isolation_level": "AUTOCOMMIT"})
        force = " WITH (FORCE)" if backend == "postgresql" else ""
        try:
            async with admin.connect() as connection:
                for name in names:
                    await connection.execute(text(f"DROP DATABASE {name}{force}"))
        finally:
            await admin.dispose()


@pytest.fixture
async def new_database(
    database_url: str,
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    _server_databases: list[str],
) -> AsyncIterator[NewDatabase]:
    """A factory of engines, each on an empty database of its own."""
    shared = direct(database_url)
    engines: list[AsyncEngine] = []

    async def new() -> AsyncEngine:
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("migrations") / "db.sqlite"
            url = shared.set(database=str(path))
        else:
            url = await _empty_server_database(shared, backend, _server_databases, len(engines))
        engine = create_engine(url)
        engines.append(engine)
        return engine

    try:
        yield new
    finally:
        for engine in engines:
            await engine.dispose()


async def _empty_server_database(shared: URL, backend: str, names: list[str], index: int) -> URL:
    admin = create_engine(shared, {"isolation_level": "AUTOCOMMIT"})
    try:
        async with admin.connect() as connection:
            if index == len(names):
                names.append(f"{shared.database}_m{uuid.uuid4().hex[:8]}")
                await connection.execute(text(f"CREATE DATABASE {names[index]}"))
            elif backend != "postgresql":
                await connection.execute(text(f"DROP DATABASE {names[index]}"))
                await connection.execute(text(f"CREATE DATABASE {names[index]}"))
    finally:
        await admin.dispose()
    url = shared.set(database=names[index])
    if backend == "postgresql":
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("DROP SCHEMA public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()
    return url
