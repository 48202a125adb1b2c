"""`async with db():` blocks, the error messages around them, and pool checkout deadlines."""

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.db import (
    CapacityError,
    MissingSessionError,
    PoolTimeoutError,
    SessionNotInitialisedError,
    SessionProxy,
    create_engine,
    create_middleware_and_session_proxy,
)
from tests.pools import queue_pool

from .conftest import Pair, engine_args, items, names


def test_unbound_proxy_says_to_add_the_middleware() -> None:
    _, fresh = create_middleware_and_session_proxy()
    with pytest.raises(SessionNotInitialisedError, match="add `SQLAlchemyMiddleware` to the app"):
        fresh.session  # noqa: B018


async def test_outside_a_request_says_to_open_a_block(pair: Pair, engine: AsyncEngine) -> None:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    with pytest.raises(MissingSessionError, match=r"open `async with db\(\):`"):
        proxy.session  # noqa: B018


async def test_block_commits_on_exit_and_restores_the_outer_context(
    pair: Pair, engine: AsyncEngine
) -> None:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    async with proxy(commit_on_exit=True) as bound:
        assert bound is proxy
        outer = proxy.session
        await outer.execute(text("SELECT 1"))
        async with proxy(commit_on_exit=True):
            assert proxy.session is not outer
            await proxy.session.execute(insert(items).values(name="inner"))
        assert proxy.session is outer
        # Written after the inner block committed: SQLite allows one writer at a time.
        await outer.execute(insert(items).values(name="outer"))
    with pytest.raises(MissingSessionError):
        proxy.session  # noqa: B018
    assert await names(engine) == ["inner", "outer"]
    assert queue_pool(engine).checkedout() == 0


async def test_block_that_raises_rolls_back_and_restores_the_outer_context(
    pair: Pair, engine: AsyncEngine
) -> None:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    async with proxy():
        outer = proxy.session
        with pytest.raises(LookupError):
            await _write_then_raise(proxy)
        assert proxy.session is outer
    assert await names(engine) == []
    assert queue_pool(engine).checkedout() == 0


async def test_block_session_refuses_work_after_the_block(pair: Pair, engine: AsyncEngine) -> None:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    async with proxy():
        kept = proxy.session
        await kept.execute(text("SELECT 1"))
    with pytest.raises(sqlalchemy.exc.InvalidRequestError, match="permanently closed"):
        await kept.execute(text("SELECT 1"))


async def test_generator_block_closed_from_another_task_ends_cleanly(
    pair: Pair, engine: AsyncEngine
) -> None:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]

    async def rows() -> AsyncGenerator[int]:
        async with proxy():
            await proxy.session.execute(text("SELECT 1"))
            yield 1
            yield 2

    stream = rows()
    # Started in one task, closed in another, as a server does with a response body
    # whose client went away: the block's context belongs to the first task.
    assert await asyncio.create_task(anext(stream)) == 1
    await stream.aclose()

    assert queue_pool(engine).checkedout() == 0
    with pytest.raises(MissingSessionError):
        proxy.session  # noqa: B018


async def test_nested_block_fails_fast_when_the_pool_is_full(
    pair: Pair, database_url: str, backend: str
) -> None:
    # The layer's pool, which says how many connections it lends: a queue pool of the
    # caller's own keeps its max_overflow to itself, and a nested block then waits.
    engine = create_engine(database_url, engine_args(backend))
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    try:
        async with engine.connect() as other:  # the second of the pool's two connections
            await other.execute(text("SELECT 1"))
            async with proxy():
                await proxy.session.execute(text("SELECT 1"))
                started = time.monotonic()
                with pytest.raises(CapacityError, match="nested `async with db"):
                    async with proxy():
                        await proxy.session.execute(text("SELECT 1"))
                assert time.monotonic() - started < 1  # pool_timeout is 3 s
        assert queue_pool(engine).checkedout() == 0
    finally:
        await engine.dispose()


async def test_pool_checkout_deadline_raises_the_typed_error(
    pair: Pair, database_url: str, backend: str
) -> None:
    middleware, proxy = pair
    engine = create_engine(database_url, engine_args(backend, pool_timeout=0.2))
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("SELECT 1"))
            await second.execute(text("SELECT 1"))
            with pytest.raises(PoolTimeoutError) as caught:
                async with proxy():
                    await proxy.session.execute(text("SELECT 1"))
        assert queue_pool(engine).checkedout() == 0
    finally:
        await engine.dispose()
    assert isinstance(caught.value, sqlalchemy.exc.TimeoutError)
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, CapacityError)
    assert "pool_size / max_overflow" in str(caught.value)


async def test_the_layers_pool_logs_under_sqlalchemys_quiet_logger(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(database_url)
    with caplog.at_level(logging.INFO):
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        await engine.dispose()

    assert type(engine.pool).__name__ == "LayerPool"
    assert [record.name for record in caplog.records if "Pool" in record.getMessage()] == []


async def test_an_engine_of_the_callers_keeps_sqlalchemys_timeout(
    pair: Pair, database_url: str, backend: str
) -> None:
    # The layer never wraps a custom engine, so its pool raises what SQLAlchemy raises;
    # the generated app answers 503 for both (tests/web/test_errors.py).
    middleware, proxy = pair
    engine = create_async_engine(database_url, **engine_args(backend, pool_timeout=0.2))
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("SELECT 1"))
            await second.execute(text("SELECT 1"))
            with pytest.raises(sqlalchemy.exc.TimeoutError) as caught:
                async with proxy():
                    await proxy.session.execute(text("SELECT 1"))
        assert queue_pool(engine).checkedout() == 0
    finally:
        await engine.dispose()
    assert type(caught.value) is sqlalchemy.exc.TimeoutError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrent": 0, "multi_sessions": True}, "max_concurrent must be 1 or more"),
        ({"max_concurrent": -1, "multi_sessions": True}, "max_concurrent must be 1 or more"),
    ],
)
def test_bad_block_options_are_refused(
    proxy: SessionProxy, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        proxy(**options)


async def test_block_session_args_override_the_defaults(pair: Pair, engine: AsyncEngine) -> None:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine, session_args={"autoflush": False})  # type: ignore[arg-type]
    async with proxy(session_args={"expire_on_commit": True, "autoflush": True}):
        assert proxy.session.sync_session.expire_on_commit is True
        assert proxy.session.sync_session.autoflush is True
    async with proxy():
        assert proxy.session.sync_session.expire_on_commit is False
        assert proxy.session.sync_session.autoflush is False


async def test_concurrent_blocks_in_tasks_do_not_see_each_other(
    pair: Pair, engine: AsyncEngine
) -> None:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]

    async def one() -> tuple[AsyncSession, AsyncSession]:
        async with proxy():
            before = proxy.session
            await asyncio.sleep(0)  # the other task opens its block meanwhile
            return before, proxy.session

    # The sessions themselves, not their id()s: a closed session may be freed and its
    # address reused by the next one.
    (first, first_again), (second, second_again) = await asyncio.gather(one(), one())
    assert first is first_again
    assert second is second_again
    assert first is not second


async def _write_then_raise(proxy: SessionProxy) -> None:
    async with proxy(commit_on_exit=True):
        await proxy.session.execute(insert(items).values(name="lost"))
        raise LookupError
