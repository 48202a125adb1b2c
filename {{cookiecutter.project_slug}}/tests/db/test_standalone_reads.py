"""`standalone_read()`: one statement on a pooled connection of its own, outside the session.

In autocommit on an engine that allows it, in a short transaction of its own on any
other; and refused, with a message that says why, where it could not see what the
caller expects.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection, event, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import SessionFinalizedError, SessionProxy, create_session_factory
from app.db.standalone import STANDALONE_READS, StandaloneReadError, standalone_read
from tests.pools import queue_pool

from .conftest import CountingSession, MakeApp, MakeClient, items

ALLOWS_AUTOCOMMIT = pytest.mark.direct_connection(
    "behind PgBouncer in transaction mode a statement's prepare and execute could reach two "
    "server connections outside a transaction, so its engines run standalone reads in one"
)


@pytest.fixture
def in_transaction(engine: AsyncEngine) -> Iterator[list[bool]]:
    """Whether asyncpg had a transaction open for each statement the engine ran (the other
    drivers keep no such flag)."""
    seen: list[bool] = []

    def record(connection: Connection, *_: Any) -> None:
        driver_connection = connection.connection.driver_connection
        is_in_transaction = getattr(driver_connection, "is_in_transaction", None)
        if is_in_transaction is not None:
            seen.append(is_in_transaction())

    event.listen(engine.sync_engine, "after_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "after_cursor_execute", record)


def _bind(proxy: SessionProxy, engine: AsyncEngine) -> None:
    """What a middleware does when it is made, for the tests outside a request."""
    proxy.bind(engine, create_session_factory(engine))


async def _add_items(engine: AsyncEngine, *names: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(items), [{"name": name} for name in names])


ORDERED_NAMES = select(items.c.name).order_by(items.c.name)


@ALLOWS_AUTOCOMMIT
async def test_an_engine_that_allows_it_reads_in_autocommit_and_returns_the_connection(
    proxy: SessionProxy, engine: AsyncEngine, in_transaction: list[bool]
) -> None:
    allowing = engine.execution_options(**STANDALONE_READS)
    _bind(proxy, allowing)
    await _add_items(engine, "b", "a")
    in_transaction.clear()

    async with proxy():
        result = await standalone_read(proxy, ORDERED_NAMES)
        assert queue_pool(engine).checkedout() == 0  # back before the rows are read
        assert list(result.scalars()) == ["a", "b"]
        assert proxy.current_unit().session is None  # the block's session never started

    if engine.dialect.name == "postgresql":
        assert in_transaction == [False]


async def test_any_other_engine_reads_in_a_transaction_of_its_own(
    proxy: SessionProxy, engine: AsyncEngine, in_transaction: list[bool]
) -> None:
    _bind(proxy, engine)
    await _add_items(engine, "c")
    in_transaction.clear()

    async with proxy():
        result = await standalone_read(proxy, ORDERED_NAMES)

    assert list(result.scalars()) == ["c"]
    assert queue_pool(engine).checkedout() == 0
    if engine.dialect.name == "postgresql":
        assert in_transaction == [True]


async def test_a_read_in_a_request_comes_before_its_session_and_leaves_it_unmade(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    await _add_items(engine, "d")
    CountingSession.created = 0
    app = make_app(session_args={"sync_session_class": CountingSession})

    @app.get("/")
    async def read() -> list[str]:
        return list((await standalone_read(proxy, ORDERED_NAMES)).scalars())

    async with make_client(app) as client:
        response = await client.get("/")

    assert response.json() == ["d"]
    assert CountingSession.created == 0
    assert queue_pool(engine).checkedout() == 0


async def test_a_unit_whose_session_has_a_transaction_is_refused(
    proxy: SessionProxy, engine: AsyncEngine
) -> None:
    _bind(proxy, engine)
    async with proxy():
        await proxy.session.execute(ORDERED_NAMES)
        with pytest.raises(StandaloneReadError, match="would not see that transaction's writes"):
            await standalone_read(proxy, ORDERED_NAMES)
        # The session goes on, holding the one connection.
        assert queue_pool(engine).checkedout() == 1
    assert queue_pool(engine).checkedout() == 0


async def test_a_multi_session_block_is_refused(proxy: SessionProxy, engine: AsyncEngine) -> None:
    _bind(proxy, engine)
    async with proxy(multi_sessions=True, max_concurrent=1):
        with pytest.raises(StandaloneReadError, match="max_concurrent would not count"):
            await standalone_read(proxy, ORDERED_NAMES)


async def test_a_unit_bound_to_a_connection_is_refused(
    proxy: SessionProxy, engine: AsyncEngine
) -> None:
    _bind(proxy, engine)
    async with engine.connect() as connection, proxy(session_args={"bind": connection}):
        with pytest.raises(StandaloneReadError, match="bound to"):
            await standalone_read(proxy, ORDERED_NAMES)


async def test_a_read_after_the_response_started_is_refused_as_the_session_would_be(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient
) -> None:
    app = make_app()
    errors: list[BaseException] = []

    @app.get("/")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            try:
                await standalone_read(proxy, ORDERED_NAMES)
            except SessionFinalizedError as exc:
                errors.append(exc)
            yield b"done"

        return StreamingResponse(body())

    async with make_client(app) as client:
        assert (await client.get("/")).text == "done"

    assert len(errors) == 1


async def test_a_failed_read_returns_its_connection(
    proxy: SessionProxy, engine: AsyncEngine
) -> None:
    _bind(proxy, engine.execution_options(**STANDALONE_READS))
    with pytest.raises(DBAPIError):
        async with proxy():
            await standalone_read(proxy, text("SELECT no_such_column FROM session_layer_items"))
    assert queue_pool(engine).checkedout() == 0
