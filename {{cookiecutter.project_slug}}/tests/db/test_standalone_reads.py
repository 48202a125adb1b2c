"""`db.read()`: one statement with no transaction where that is safe, the session elsewhere."""

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, event, insert, select, text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.db import (
    STANDALONE_READS,
    MissingSessionError,
    SessionProxy,
    create_engine,
    create_session_factory,
    fetch_keyset_page,
)
from tests.conftest import BEHIND_PGBOUNCER
from tests.pools import queue_pool

from .conftest import CountingSession, Item, MakeApp, MakeClient, items

# A standalone read behind PgBouncer in transaction mode could be prepared on one server
# connection and run on another, so engines there do not allow them.
NEEDS_STANDALONE_READS = pytest.mark.direct_connection(
    "standalone reads are off behind PgBouncer in transaction mode, which may run a "
    "statement's prepare and execute on two server connections outside a transaction"
)


@pytest.fixture
def engine(engine: AsyncEngine) -> AsyncEngine:
    """The layer tests' engine, made by hand, opted in as create_engine() would do."""
    return engine if BEHIND_PGBOUNCER else engine.execution_options(**STANDALONE_READS)


@pytest.fixture
def in_transaction(engine: AsyncEngine) -> Iterator[list[bool]]:
    """Whether the driver had a transaction open for each statement the engine ran.

    Read after the statement: asyncpg's adapter sends BEGIN as it runs the first one.
    """
    seen: list[bool] = []

    def record(connection: Connection, *_: Any) -> None:
        driver_connection = connection.connection.driver_connection
        is_in_transaction = getattr(driver_connection, "is_in_transaction", None)
        if is_in_transaction is not None:  # asyncpg's; the other drivers keep no such flag
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


async def test_a_read_returns_what_the_session_would(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    await _add_items(engine, "b", "a")
    app = make_app()

    @app.get("/")
    async def both() -> dict[str, Any]:
        standalone = (await proxy.read(select(items.c.name).order_by(items.c.name))).all()
        through_the_session = (
            await proxy.session.execute(select(items.c.name).order_by(items.c.name))
        ).all()
        return {
            "standalone": [list(row) for row in standalone],
            "session": [list(row) for row in through_the_session],
        }

    async with make_client(app) as http:
        answer = (await http.get("/")).json()
    assert answer["standalone"] == answer["session"] == [["a"], ["b"]]


@pytest.mark.postgresql
@NEEDS_STANDALONE_READS
async def test_a_read_before_the_session_exists_has_no_transaction_and_gives_its_connection_back(
    make_app: MakeApp,
    proxy: SessionProxy,
    make_client: MakeClient,
    engine: AsyncEngine,
    in_transaction: list[bool],
) -> None:
    await _add_items(engine, "a")
    in_transaction.clear()
    app = make_app(session_args={"sync_session_class": CountingSession})
    held: list[int] = []

    @app.get("/")
    async def read() -> list[str]:
        names = list((await proxy.read(select(items.c.name))).scalars())
        held.append(queue_pool(engine).checkedout())
        return names

    before = CountingSession.created
    async with make_client(app) as http:
        assert (await http.get("/")).json() == ["a"]
    assert in_transaction == [False]
    assert held == [0]  # back in the pool while the route still runs
    assert CountingSession.created == before  # the request made no session


async def test_once_the_session_exists_a_read_sees_its_writes_in_its_transaction(
    make_app: MakeApp,
    proxy: SessionProxy,
    make_client: MakeClient,
    engine: AsyncEngine,
    in_transaction: list[bool],
) -> None:
    app = make_app()
    held: list[int] = []

    @app.get("/")
    async def write_then_read() -> list[str]:
        proxy.session.add(Item(name="pending"))  # not flushed: the read's autoflush writes it
        names = list((await proxy.read(select(items.c.name))).scalars())
        held.append(queue_pool(engine).checkedout())
        return names

    async with make_client(app) as http:
        assert (await http.get("/")).json() == ["pending"]
    assert held == [1]  # the session's one connection, no second one
    assert False not in in_transaction
    async with engine.connect() as connection:  # never committed (no commit_on_exit)
        assert (await connection.execute(select(items.c.name))).all() == []


async def test_an_orm_statement_reads_entities_through_the_session(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    await _add_items(engine, "a")
    app = make_app()

    @app.get("/")
    async def entities() -> list[str]:
        found = (await proxy.read(select(Item))).scalars().all()
        assert all(isinstance(item, Item) for item in found)
        assert proxy.session.in_transaction()
        return [item.name for item in found]

    async with make_client(app) as http:
        assert (await http.get("/")).json() == ["a"]


@pytest.mark.postgresql
async def test_begin_listeners_keep_reads_in_a_transaction(
    proxy: SessionProxy, engine: AsyncEngine, in_transaction: list[bool]
) -> None:
    # What a listener sets up per transaction (PgBouncer's limits in app/pooler.py, a
    # tenant, a role) would be missing from a read outside one.
    begun: list[Connection] = []

    def begin(connection: Connection) -> None:
        begun.append(connection)

    event.listen(engine.sync_engine, "begin", begin)
    _bind(proxy, engine)
    try:
        async with proxy():
            assert (await proxy.read(text("SELECT 1"))).scalar_one() == 1
    finally:
        event.remove(engine.sync_engine, "begin", begin)
    assert len(begun) == 1
    assert in_transaction == [True]


@pytest.mark.postgresql
@NEEDS_STANDALONE_READS
@pytest.mark.parametrize("canceller", ["task.cancel()", "anyio cancel scope"])
async def test_a_cancelled_read_gives_its_connection_back(
    proxy: SessionProxy, engine: AsyncEngine, canceller: str
) -> None:
    # An anyio scope delivers the cancellation again at every await until it exits,
    # so the read must give its connection back without awaiting anything more.
    _bind(proxy, engine)
    scope = anyio.CancelScope()
    marker = uuid.uuid4().hex

    async def sleep_in_the_database() -> None:
        with scope:
            async with proxy():
                await proxy.read(text(f"SELECT pg_sleep(30) AS slept_{marker}"))

    task = asyncio.create_task(sleep_in_the_database())
    async with engine.connect() as watcher:
        for _ in range(200):  # at most 10 s for the sleep to reach the server
            if task.done():
                await task  # it failed before the sleep began: show why
            # The server is shared: other suites may be sleeping too, under this name.
            running = await watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    " AND pid <> pg_backend_pid() AND query LIKE :marked"
                ),
                {"marked": f"%{marker}%"},
            )
            # A transaction sees the statistics of its first look at them: end it, so
            # that the next look is a new one.
            await watcher.rollback()
            if running:
                break
            await asyncio.sleep(0.05)
        assert running == 1
    if canceller == "task.cancel()":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        scope.cancel()
        await task  # the scope takes its own cancellation
    assert queue_pool(engine).checkedout() == 0
    async with proxy(), asyncio.timeout(5):  # the returned connection works at once
        assert (await proxy.read(text("SELECT 1"))).scalar_one() == 1


async def test_a_streaming_statement_gets_the_sessions_error(
    proxy: SessionProxy, engine: AsyncEngine
) -> None:
    _bind(proxy, engine)
    async with proxy():
        with pytest.raises(InvalidRequestError, match="stream"):
            await proxy.read(select(items.c.name).execution_options(yield_per=10))


async def test_keyset_pages_read_through_the_proxy_as_through_a_session(
    proxy: SessionProxy, engine: AsyncEngine
) -> None:
    await _add_items(engine, "c", "a", "b")
    _bind(proxy, engine)
    query = select(items.c.id, items.c.name)
    key = (items.c.name, items.c.id)
    async with proxy():
        rows, last = await fetch_keyset_page(proxy, query, key=key, limit=2)
        expected, expected_last = await fetch_keyset_page(proxy.session, query, key=key, limit=2)
    assert [row.name for row in rows] == [row.name for row in expected] == ["a", "b"]
    assert last == expected_last


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("engine_args", "allowed"),
    [
        ({}, True),
        ({"poolclass": NullPool}, False),
        ({"connect_args": {"statement_cache_size": 0}}, False),
        ({"execution_options": {"standalone_reads": False}}, False),
    ],
    ids=["own pool", "NullPool", "no statement cache", "turned off"],
)
async def test_create_engine_allows_standalone_reads_except_behind_pgbouncer(
    database_url: str, engine_args: dict[str, Any], allowed: bool
) -> None:
    engine = create_engine(database_url, engine_args)
    try:
        options = engine.sync_engine.get_execution_options()
        assert options.get("standalone_reads", False) is allowed
    finally:
        await engine.dispose()


async def test_an_engine_of_your_own_reads_through_the_session_until_it_opts_in(
    proxy: SessionProxy, database_url: str, items_table: None
) -> None:
    own = create_async_engine(database_url)
    _bind(proxy, own)
    try:
        async with proxy():
            await proxy.read(select(items.c.name))
            assert proxy.session.in_transaction()  # the read made the session
    finally:
        await own.dispose()


async def test_a_read_outside_any_unit_of_work_names_the_fix(
    proxy: SessionProxy, engine: AsyncEngine
) -> None:
    _bind(proxy, engine)
    with pytest.raises(MissingSessionError):
        await proxy.read(select(items.c.name))
