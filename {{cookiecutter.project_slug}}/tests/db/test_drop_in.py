"""Code written for fastapi-async-sqlalchemy and its users' test habits runs unchanged.

Each test is one behaviour that library's users rely on: sessions bound to the very
engine they passed, events firing as SQLAlchemy fires them, a proxy that survives
`copy.deepcopy` (FastAPI deep-copies parameter defaults), and `db.connection()` and
`max_concurrent` in plain blocks.
"""

import copy
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from app.db import (
    SessionNotInitialisedError,
    SessionProxy,
    create_middleware_and_session_proxy,
    db,
)
from tests.conftest import POOLER_CONNECT_ARGS

from .conftest import MakeApp, MakeClient, Pair, call, engine_args, items, names


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("no request reaches the app in this test")


# 1. The session is bound to the user's own engine.


async def test_request_session_is_bound_to_the_custom_engine(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app()
    seen: list[bool] = []

    @app.get("/")
    async def read() -> None:
        session = proxy.session
        seen.extend([session.bind is engine, session.get_bind() is engine.sync_engine])

    async with make_client(app) as http:
        assert (await http.get("/")).status_code == 200
    assert seen == [True, True]


async def test_blocks_and_their_children_are_bound_to_the_custom_engine(
    pair: Pair, engine: AsyncEngine
) -> None:
    middleware_class, proxy = pair
    middleware_class(_no_app, custom_engine=engine)
    binds: list[object] = []

    async def child() -> None:
        binds.append(proxy.session.bind)

    async with proxy():
        binds.append(proxy.session.bind)
    async with proxy(multi_sessions=True):
        await proxy.gather(child(), child())
        async with proxy.connection() as session:
            binds.append(session.bind)
    assert binds == [engine] * 4


async def test_an_owned_engine_is_the_bind_and_the_one_disposed(
    pair: Pair, database_url: str, backend: str
) -> None:
    middleware_class, proxy = pair
    middleware = middleware_class(_no_app, db_url=database_url, engine_args=engine_args(backend))
    disposed: list[Engine] = []
    event.listen(middleware.engine.sync_engine, "engine_disposed", disposed.append)

    async with proxy():
        bind = proxy.session.bind
        await proxy.session.execute(text("SELECT 1"))
    await middleware.dispose()

    assert bind is middleware.engine
    assert disposed == [middleware.engine.sync_engine]


async def test_every_pair_binds_its_own_engine(engine: AsyncEngine, database_url: str) -> None:
    second_engine = create_async_engine(database_url, connect_args=POOLER_CONNECT_ARGS)
    (first_class, first), (second_class, second) = (
        create_middleware_and_session_proxy("first"),
        create_middleware_and_session_proxy("second"),
    )
    first_class(_no_app, custom_engine=engine)
    second_class(_no_app, custom_engine=second_engine)
    try:
        async with first(), second():
            assert first.session.bind is engine
            assert second.session.bind is second_engine
    finally:
        await second_engine.dispose()


def _count_events(engine: AsyncEngine) -> tuple[dict[str, int], Callable[[], None]]:
    """Listeners on the engine, on every Engine, on every Session and on the pool."""
    counts = dict.fromkeys(
        ("engine_connect", "before_cursor_execute", "after_begin", "checkout", "commit"), 0
    )

    def counter(name: str) -> Callable[..., None]:
        def count(*args: object, **kwargs: object) -> None:
            counts[name] += 1

        return count

    listeners: list[tuple[object, str, Callable[..., None]]] = [
        (Engine, "engine_connect", counter("engine_connect")),
        (engine.sync_engine, "before_cursor_execute", counter("before_cursor_execute")),
        (Session, "after_begin", counter("after_begin")),
        (engine.sync_engine.pool, "checkout", counter("checkout")),
        (engine.sync_engine, "commit", counter("commit")),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)

    def remove() -> None:
        for target, name, listener in listeners:
            event.remove(target, name, listener)

    return counts, remove


async def test_events_fire_exactly_as_they_do_without_the_layer(
    pair: Pair, engine: AsyncEngine
) -> None:
    middleware_class, proxy = pair
    middleware_class(_no_app, custom_engine=engine)

    async def work(session: AsyncSession, name: str) -> None:
        await session.execute(insert(items).values(name=name))
        await session.execute(select(items.c.id))
        await session.commit()

    counts, remove = _count_events(engine)
    try:
        async with AsyncSession(engine) as session:
            await work(session, "plain")
        plain = dict(counts)
        counts.update(dict.fromkeys(counts, 0))
        async with proxy():
            await work(proxy.session, "layer")
        layer = dict(counts)
    finally:
        remove()

    assert plain["before_cursor_execute"] >= 2
    assert layer == plain
    assert await names(engine) == ["layer", "plain"]


# 2. The proxy survives the ways frameworks handle objects.


def test_copies_of_the_proxy_are_the_proxy() -> None:
    assert copy.copy(db) is db
    assert copy.deepcopy(db) is db
    assert copy.deepcopy({"default": db})["default"] is db


def test_pickling_the_module_proxy_gives_it_back_and_others_say_why_not() -> None:
    assert pickle.loads(pickle.dumps(db)) is db
    _, other = create_middleware_and_session_proxy("reports")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(other)


async def test_proxy_as_a_parameter_default_in_fifty_apps(
    pair: Pair, engine: AsyncEngine, make_client: MakeClient
) -> None:
    middleware_class, proxy = pair
    apps: list[FastAPI] = []
    for number in range(50):
        app = FastAPI()
        app.add_middleware(middleware_class, custom_engine=engine, commit_on_exit=True)

        # FastAPI deep-copies this default while it builds the route.
        @app.post("/")
        async def write(k: int = number, session_proxy: Any = proxy) -> dict[str, int]:
            await session_proxy.session.execute(insert(items).values(name=f"app-{k}"))
            return {"k": k}

        apps.append(app)

    for app in apps:
        async with make_client(app) as http:
            assert (await http.post("/")).status_code == 200
    assert len(await names(engine)) == 50


# 3. fastapi-async-sqlalchemy 0.8's db.connection() and max_concurrent.


async def test_connection_in_a_request_is_the_request_session(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app(commit_on_exit=True)
    same: list[bool] = []

    @app.post("/")
    async def write() -> None:
        async with proxy.connection() as session:
            same.append(session is proxy.session)
            await session.execute(insert(items).values(name="via-connection"))
        # The block handed out the unit of work's session; it did not end it.
        await proxy.session.execute(select(items.c.id))

    async with make_client(app) as http:
        assert (await http.post("/")).status_code == 200
    assert same == [True]
    assert await names(engine) == ["via-connection"]


async def test_connection_follows_the_innermost_block(pair: Pair, engine: AsyncEngine) -> None:
    middleware_class, proxy = pair
    middleware_class(_no_app, custom_engine=engine)

    async with proxy(commit_on_exit=True):
        outer = proxy.session
        async with proxy(commit_on_exit=True):
            inner = proxy.session
            async with proxy.connection() as session:
                assert session is inner
                await session.execute(insert(items).values(name="inner"))
        async with proxy.connection() as session:
            assert session is outer
    assert inner is not outer
    assert await names(engine) == ["inner"]


async def test_max_concurrent_without_multi_sessions_warns_and_is_ignored(
    pair: Pair, engine: AsyncEngine
) -> None:
    middleware_class, proxy = pair
    middleware_class(_no_app, custom_engine=engine)

    with pytest.warns(UserWarning, match="max_concurrent only applies with multi_sessions=True"):
        block = proxy(max_concurrent=3)
    async with block:
        await proxy.session.execute(text("SELECT 1"))


def test_the_max_concurrent_warning_points_at_the_caller() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db(max_concurrent=2)
    assert [warning.filename for warning in caught] == [__file__]


async def test_connection_before_any_middleware_says_to_add_one() -> None:
    _, unbound = create_middleware_and_session_proxy("unbound")
    with pytest.raises(SessionNotInitialisedError, match="add `SQLAlchemyMiddleware`"):
        async with unbound.connection():
            pass


async def test_connection_in_a_request_of_a_raw_asgi_app(pair: Pair, engine: AsyncEngine) -> None:
    middleware_class, proxy = pair

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with proxy.connection() as session:
            await session.execute(insert(items).values(name="raw"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = await call(middleware_class(app, custom_engine=engine, commit_on_exit=True))
    assert sent[0]["status"] == 200
    assert await names(engine) == ["raw"]
