"""Cancellation and disconnects never leak a connection or leave a transaction open."""

import asyncio
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.types import Message

from app.db import SessionProxy
from tests.conftest import POOLER_CONNECT_ARGS
from tests.pools import queue_pool

from .conftest import APPLICATION_NAME, MakeApp, call, items, names


async def idle_in_transaction(database_url: str) -> list[str]:
    """States of this suite's PostgreSQL backends that sit inside an open transaction."""
    observer = create_async_engine(database_url, connect_args=POOLER_CONNECT_ARGS)
    try:
        async with observer.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = :name AND state LIKE 'idle in transaction%'"
                ),
                {"name": APPLICATION_NAME},
            )
            return list(rows.scalars())
    finally:
        await observer.dispose()


def _holding_app(make_app: MakeApp, proxy: SessionProxy, started: asyncio.Event) -> FastAPI:
    app = make_app(commit_on_exit=True)

    @app.get("/")
    async def hold() -> None:
        await proxy.session.execute(insert(items).values(name="never committed"))
        started.set()
        await asyncio.sleep(30)

    return app


async def _call_until_started(app: FastAPI, started: asyncio.Event) -> None:
    """Call `app` under an asyncio deadline that expires once the route holds its
    transaction: a fixed one could expire during the INSERT on a loaded machine, and a
    driver cancelled in the middle of a query throws the connection away."""

    async def expire_once_started(deadline: asyncio.Timeout) -> None:
        await started.wait()
        deadline.reschedule(asyncio.get_running_loop().time())

    async with asyncio.timeout(None) as deadline:
        expiring = asyncio.ensure_future(expire_once_started(deadline))
        try:
            await call(app)
        finally:
            expiring.cancel()  # done already, unless the call failed before the route began


async def test_asyncio_timeout_releases_the_connection(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    started = asyncio.Event()
    app = _holding_app(make_app, proxy, started)
    with pytest.raises(TimeoutError):
        await _call_until_started(app, started)
    assert queue_pool(engine).checkedout() == 0
    assert await names(engine) == []


async def test_task_cancel_propagates_unchanged(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    started = asyncio.Event()
    app = _holding_app(make_app, proxy, started)
    task = asyncio.create_task(call(app))
    await started.wait()
    task.cancel("client went away")
    with pytest.raises(asyncio.CancelledError, match="client went away"):
        await task
    assert queue_pool(engine).checkedout() == 0


async def test_anyio_cancel_scope_releases_the_connection(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    started = asyncio.Event()
    app = _holding_app(make_app, proxy, started)

    async def cancel_once_started(scope: anyio.CancelScope) -> None:
        # Once the route holds its transaction, not after a fixed time: on a loaded
        # machine the INSERT itself can outlast a deadline, and a driver cancelled in
        # the middle of a query throws the connection away.
        await started.wait()
        scope.cancel()

    with anyio.CancelScope() as scope:
        canceller = asyncio.ensure_future(cancel_once_started(scope))
        await call(app)
    await canceller
    assert scope.cancelled_caught
    assert queue_pool(engine).checkedout() == 0
    # Rolled back and returned, not thrown away half-closed: anyio re-cancels at every
    # await, so this holds only when the cleanup is shielded.
    assert queue_pool(engine).checkedin() == 1


async def test_disconnect_during_a_stream_ends_the_generators_block(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    app = make_app()
    streaming = asyncio.Event()
    disconnect = asyncio.Event()

    async def rows() -> AsyncIterator[bytes]:
        async with proxy():
            await proxy.session.execute(text("SELECT 1"))
            yield b"first"
            streaming.set()
            await asyncio.sleep(30)
            yield b"never"

    @app.get("/")
    async def stream() -> StreamingResponse:
        return StreamingResponse(rows())

    request = asyncio.create_task(call(app, disconnect=disconnect))
    await streaming.wait()
    disconnect.set()
    async with asyncio.timeout(5):
        await request
    assert queue_pool(engine).checkedout() == 0


def _late_commit_app(
    make_app: MakeApp, proxy: SessionProxy, expire: Callable[[], object]
) -> FastAPI:
    app = make_app(commit_on_exit=True)

    @app.get("/")
    async def write_then_expire() -> None:
        await proxy.session.execute(insert(items).values(name="committed"))
        # The deadline passes here, with no await left in the route, so the cancellation
        # lands on the first await after it: the middleware's commit. (A wall-clock
        # deadline could land earlier, on the INSERT, on a loaded machine.)
        expire()

    return app


async def test_cancellation_landing_on_the_commit_lets_it_finish(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    deadline = asyncio.timeout(None)
    now = asyncio.get_running_loop().time
    app = _late_commit_app(make_app, proxy, lambda: deadline.reschedule(now()))
    with pytest.raises(TimeoutError):
        async with deadline:
            await call(app)
    assert await names(engine) == ["committed"]
    assert queue_pool(engine).checkedout() == 0
    assert queue_pool(engine).checkedin() == 1  # returned whole, not discarded mid-commit


async def test_anyio_cancellation_landing_on_the_commit_lets_it_finish(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    sent: list[Message] = []
    with anyio.CancelScope() as scope:
        sent = await call(_late_commit_app(make_app, proxy, scope.cancel))
    assert scope.cancelled_caught
    assert sent == []  # no status reached the client
    assert await names(engine) == ["committed"]
    assert queue_pool(engine).checkedout() == 0
    assert queue_pool(engine).checkedin() == 1  # returned whole, not discarded mid-commit


@pytest.mark.postgresql
async def test_no_backend_is_left_idle_in_transaction(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine, database_url: str
) -> None:
    started = asyncio.Event()
    app = _holding_app(make_app, proxy, started)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await call(app)
    with anyio.move_on_after(0.3):
        started.clear()
        await call(app)
    assert started.is_set()
    assert queue_pool(engine).checkedout() == 0
    assert await idle_in_transaction(database_url) == []


@pytest.mark.postgresql
async def test_many_cancelled_requests_leak_nothing(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine, database_url: str
) -> None:
    started = asyncio.Event()
    app = _holding_app(make_app, proxy, started)
    # Two at a time, the pool's size: a leaked connection would stall the next round.
    for _ in range(5):
        tasks = [asyncio.create_task(call(app)) for _ in range(2)]
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert queue_pool(engine).checkedout() == 0
    assert await idle_in_transaction(database_url) == []
