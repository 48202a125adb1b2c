"""A connection the server closed while it sat in the pool is replaced, not lent.

A restart, a failover or an operator ending backends closes the pool's idle
connections from the server's side. asyncpg sees the socket close as it happens, so
on PostgreSQL `create_engine()`'s engines check that at checkout, which costs no round
trip, and hand out a fresh connection instead. aiomysql tells no such thing, so on
MySQL they pre-ping each connection at checkout.
"""

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from app.db import create_engine
from tests.conftest import terminate_backend
from tests.pools import queue_pool

# Statements that name this connection's server process, and end another one.
_OWN_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}

pytestmark = pytest.mark.direct_connection(
    "PgBouncer keeps the client's connection open when the server's ends, and pools "
    "no connections of the app's own to check"
)


async def _end_server_connection(admin: AsyncEngine, backend: str, connection_id: int) -> None:
    async with admin.connect() as connection:
        if backend == "postgresql":
            await terminate_backend(connection, connection_id)
        else:
            # KILL returns once the server has closed the connection.
            await connection.execute(text(f"KILL CONNECTION {int(connection_id)}"))


@pytest.fixture
def server(backend: str) -> str:
    if backend == "sqlite":
        pytest.skip("SQLite has no server to close a connection: TEST_DATABASE_URL names one")
    return backend


async def test_a_connection_the_server_closed_is_replaced_at_checkout(
    database_url: str, server: str
) -> None:
    # The layer's defaults: no pre-ping on PostgreSQL, whose driver sees the socket close;
    # pre-ping on MySQL, whose driver does not.
    engine = create_engine(database_url, {"pool_size": 1, "max_overflow": 0})
    admin = create_engine(database_url, {"poolclass": NullPool})
    try:
        async with engine.connect() as connection:
            first = (await connection.execute(text(_OWN_ID[server]))).scalar_one()
        await _end_server_connection(admin, server, first)

        async with engine.connect() as connection:
            second = (await connection.execute(text(_OWN_ID[server]))).scalar_one()

        assert second != first
        assert queue_pool(engine).checkedout() == 0
    finally:
        await engine.dispose()
        await admin.dispose()
