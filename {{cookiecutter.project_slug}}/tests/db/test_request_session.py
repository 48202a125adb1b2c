"""The request session: lazy, committed or rolled back before the response starts."""

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.types import Message, Receive, Scope, Send

from app.db import SessionFinalizedError, SessionProxy, create_session_factory, session_dependency
from tests.pools import queue_pool

from .conftest import CountingSession, Item, MakeApp, MakeClient, call, items, names


async def test_request_that_never_reads_the_session_creates_none(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app(session_args={"sync_session_class": CountingSession})
    seen: list[int] = []

    @app.get("/")
    async def no_db() -> dict[str, int]:
        seen.append(queue_pool(engine).checkedout())
        return {"ok": 1}

    before = CountingSession.created
    async with make_client(app) as http:
        assert (await http.get("/")).status_code == 200
    assert CountingSession.created == before
    assert seen == [0]

    @app.get("/db")
    async def with_db() -> None:
        await proxy.session.execute(text("SELECT 1"))
        seen.append(queue_pool(engine).checkedout())

    async with make_client(app) as http:
        await http.get("/db")
    assert CountingSession.created == before + 1
    assert seen == [0, 1]
    assert queue_pool(engine).checkedout() == 0


async def test_commit_happens_before_the_response_starts(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    app = make_app(commit_on_exit=True)

    @app.get("/")
    async def create() -> dict[str, str]:
        await proxy.session.execute(insert(items).values(name="first"))
        return {"created": "first"}

    seen_at_start: list[list[str]] = []

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            seen_at_start.append(await names(engine))

    sent = await call(app, on_send=on_send)
    assert sent[0]["status"] == 200
    assert seen_at_start == [["first"]]


async def test_failed_commit_gives_500_and_keeps_nothing(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app(commit_on_exit=True)
    conflict_handler_calls: list[str] = []

    @app.exception_handler(IntegrityError)
    async def conflict(request: object, exc: IntegrityError) -> JSONResponse:
        conflict_handler_calls.append(str(exc))
        return JSONResponse({"detail": "conflict"}, status_code=409)

    @app.get("/")
    async def duplicate() -> dict[str, str]:
        # No flush: the INSERTs run, and fail, inside the middleware's commit.
        proxy.session.add_all([Item(name="same"), Item(name="same")])
        return {"created": "same"}

    async with make_client(app, raise_app_exceptions=False) as http:
        response = await http.get("/")
    # The app had already produced its response, so Starlette refuses to run the 409
    # handler; the only honest answer left is a 500.
    assert response.status_code == 500
    assert conflict_handler_calls == []
    assert await names(engine) == []
    assert queue_pool(engine).checkedout() == 0


async def test_conflict_flushed_in_the_endpoint_reaches_its_handler(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient
) -> None:
    app = make_app(commit_on_exit=True)

    @app.exception_handler(IntegrityError)
    async def conflict(request: object, exc: IntegrityError) -> JSONResponse:
        return JSONResponse({"detail": "conflict"}, status_code=409)

    @app.get("/")
    async def duplicate() -> None:
        proxy.session.add_all([Item(name="same"), Item(name="same")])
        await proxy.session.flush()

    async with make_client(app) as http:
        assert (await http.get("/")).status_code == 409


@pytest.mark.parametrize("status", [400, 404, 500])
async def test_error_status_rolls_back(
    make_app: MakeApp,
    proxy: SessionProxy,
    make_client: MakeClient,
    engine: AsyncEngine,
    status: int,
) -> None:
    app = make_app(commit_on_exit=True)

    @app.get("/")
    async def write_then_fail() -> JSONResponse:
        await proxy.session.execute(insert(items).values(name="rolled back"))
        return JSONResponse({}, status_code=status)

    async with make_client(app) as http:
        assert (await http.get("/")).status_code == status
    assert await names(engine) == []


async def test_http_exception_rolls_back(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app(commit_on_exit=True)

    @app.get("/")
    async def write_then_raise() -> None:
        await proxy.session.execute(insert(items).values(name="rolled back"))
        raise HTTPException(status_code=409, detail="no")

    async with make_client(app) as http:
        assert (await http.get("/")).status_code == 409
    assert await names(engine) == []


async def test_without_commit_on_exit_nothing_is_committed(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app()

    @app.get("/")
    async def write() -> None:
        await proxy.session.execute(insert(items).values(name="uncommitted"))

    async with make_client(app) as http:
        assert (await http.get("/")).status_code == 200
    assert await names(engine) == []


async def test_unhandled_exception_rolls_back_and_propagates(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app(commit_on_exit=True)

    @app.get("/")
    async def write_then_crash() -> None:
        await proxy.session.execute(insert(items).values(name="rolled back"))
        raise LookupError("the original")

    async with make_client(app) as http:
        with pytest.raises(LookupError, match="the original"):
            await http.get("/")
    assert await names(engine) == []
    assert queue_pool(engine).checkedout() == 0


class _CloseFails(CountingSession):
    def close(self) -> None:
        super().close()
        raise RuntimeError("close failed too")


async def test_original_exception_wins_when_cleanup_fails(
    make_app: MakeApp,
    proxy: SessionProxy,
    make_client: MakeClient,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(session_args={"sync_session_class": _CloseFails})

    @app.get("/")
    async def crash() -> None:
        await proxy.session.execute(text("SELECT 1"))
        raise LookupError("the original")

    async with make_client(app) as http:
        with pytest.raises(LookupError, match="the original"):
            await http.get("/")
    assert "close failed too" in caplog.text
    assert queue_pool(engine).checkedout() == 0


async def test_only_a_session_still_in_a_transaction_is_ended_in_a_task_of_its_own(
    make_app: MakeApp, proxy: SessionProxy, engine: AsyncEngine
) -> None:
    # The shield's task keeps a cancellation from cutting a rollback or commit short.
    # A route that committed itself leaves nothing to cut short, so its request ends
    # without one; either way the row is kept and the connection is back in the pool.
    app = make_app(commit_on_exit=True)

    @app.get("/committed")
    async def committed() -> None:
        proxy.session.add(Item(name="committed by the route"))
        await proxy.session.commit()

    @app.get("/pending")
    async def pending() -> None:
        proxy.session.add(Item(name="committed on exit"))
        await proxy.session.flush()

    loop = asyncio.get_running_loop()
    default_factory = loop.get_task_factory()
    started: list[str] = []

    # Any: the factory's coroutine type differs across Python versions, and only a real
    # coroutine has the __qualname__ this reads.
    def counting_factory(
        loop: asyncio.AbstractEventLoop, coro: Any, **options: Any
    ) -> asyncio.Task[Any]:
        started.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **options)

    loop.set_task_factory(counting_factory)
    try:
        committed_start = (await call(app, "/committed"))[0]
        tasks_for_committed = list(started)
        pending_start = (await call(app, "/pending"))[0]
    finally:
        loop.set_task_factory(default_factory)

    assert (committed_start["status"], pending_start["status"]) == (200, 200)
    assert tasks_for_committed == []
    assert started == ["end_session"]
    assert queue_pool(engine).checkedout() == 0
    assert await names(engine) == ["committed by the route", "committed on exit"]


async def test_background_task_runs_after_the_connection_is_returned(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app(commit_on_exit=True)
    report: dict[str, object] = {}

    async def later() -> None:
        report["checked out"] = queue_pool(engine).checkedout()
        try:
            proxy.session  # noqa: B018 - the access itself is what raises
        except SessionFinalizedError as exc:
            report["error"] = str(exc)
        async with proxy(commit_on_exit=True):
            await proxy.session.execute(insert(items).values(name="from the task"))

    @app.get("/")
    async def schedule(tasks: BackgroundTasks) -> None:
        await proxy.session.execute(insert(items).values(name="from the request"))
        tasks.add_task(later)

    async with make_client(app) as http:
        assert (await http.get("/")).status_code == 200
    assert report["checked out"] == 0
    assert "open `async with db():`" in str(report["error"])
    assert await names(engine) == ["from the request", "from the task"]


async def test_session_object_kept_past_the_response_refuses_work(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient
) -> None:
    app = make_app()
    kept: list[AsyncSession] = []
    errors: list[Exception] = []

    async def later() -> None:
        try:
            await kept[0].execute(text("SELECT 1"))
        except Exception as exc:
            errors.append(exc)

    @app.get("/")
    async def schedule(tasks: BackgroundTasks) -> None:
        kept.append(proxy.session)
        await proxy.session.execute(text("SELECT 1"))
        tasks.add_task(later)

    async with make_client(app) as http:
        await http.get("/")
    assert "permanently closed" in str(errors[0])


async def test_streaming_generator_with_its_own_block_keeps_one_session(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient
) -> None:
    app = make_app()

    async def chunks() -> AsyncIterator[str]:
        try:
            proxy.session  # noqa: B018 - the request session has ended by now
        except SessionFinalizedError:
            yield "request session ended;"
        async with proxy():
            for _ in range(3):
                await proxy.session.execute(text("SELECT 1"))
                await asyncio.sleep(0)
                yield f"{id(proxy.session)};"

    @app.get("/")
    async def stream() -> StreamingResponse:
        await proxy.session.execute(text("SELECT 1"))
        return StreamingResponse(chunks())

    async with make_client(app) as http:
        parts = (await http.get("/")).text.rstrip(";").split(";")
    assert parts[0] == "request session ended"
    assert len(set(parts[1:])) == 1


async def test_dependency_and_proxy_share_one_session(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, engine: AsyncEngine
) -> None:
    app = make_app(commit_on_exit=True)
    session_dep = Annotated[AsyncSession, Depends(session_dependency(proxy))]

    @app.get("/")
    async def both(session: session_dep) -> dict[str, bool]:
        await session.execute(insert(items).values(name="via dependency"))
        await proxy.session.execute(insert(items).values(name="via proxy"))
        return {"same": session is proxy.session}

    async with make_client(app) as http:
        assert (await http.get("/")).json() == {"same": True}
    assert await names(engine) == ["via dependency", "via proxy"]


async def test_non_http_scopes_pass_through(make_app: MakeApp, proxy: SessionProxy) -> None:
    app = make_app()
    seen: list[str] = []

    async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            proxy.session  # noqa: B018
        except Exception as exc:
            seen.append(type(exc).__name__)

    middleware = app.user_middleware[0]
    wrapped = middleware.cls(websocket_app, *middleware.args, **middleware.kwargs)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        pass

    await wrapped({"type": "websocket", "path": "/"}, receive, send)
    assert seen == ["MissingSessionError"]


async def test_default_session_settings_and_overrides(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient
) -> None:
    app = make_app(session_args={"autoflush": False, "expire_on_commit": True})
    defaults_app = make_app()
    seen: dict[str, object] = {}

    @app.get("/")
    async def settings() -> None:
        seen["custom"] = (
            proxy.session.sync_session.autoflush,
            proxy.session.sync_session.expire_on_commit,
        )

    @defaults_app.get("/")
    async def defaults() -> None:
        seen["default"] = proxy.session.sync_session.expire_on_commit

    async with make_client(app) as http:
        await http.get("/")
    async with make_client(defaults_app) as http:
        await http.get("/")
    assert seen == {"custom": (False, True), "default": False}


async def test_session_args_may_replace_the_bind(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        factory = create_session_factory(engine, {"bind": connection, "autoflush": False})
        async with factory() as session:
            assert session.bind is connection
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
            assert session.sync_session.autoflush is False
