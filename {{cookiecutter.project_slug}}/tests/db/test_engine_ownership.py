"""Who disposes which engine, proxy bindings, and many apps in one process."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import StatelessLifespan

from app.db import (
    ProxyBindingError,
    SessionProxy,
    SQLAlchemyMiddleware,
    create_middleware_and_session_proxy,
    db,
)

from .conftest import MakeApp, MakeClient, Pair, engine_args


def count_disposals(engine: AsyncEngine) -> list[int]:
    """The list grows by one each time `engine` is disposed."""
    disposals: list[int] = []
    event.listen(engine.sync_engine, "engine_disposed", lambda _: disposals.append(1))
    return disposals


def owned_app(
    pair: Pair, database_url: str, backend: str, lifespan: StatelessLifespan[FastAPI] | None = None
) -> tuple[FastAPI, list[SQLAlchemyMiddleware], list[int]]:
    """An app whose middleware makes its own engine, and the list of that engine's disposals."""
    middleware_cls, _ = pair
    disposals: list[int] = []

    class Recording(middleware_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            event.listen(self.engine.sync_engine, "engine_disposed", lambda _: disposals.append(1))
            made.append(self)

    made: list[SQLAlchemyMiddleware] = []
    app = FastAPI(lifespan=lifespan)
    app.add_middleware(Recording, db_url=database_url, engine_args=engine_args(backend))
    return app, made, disposals


async def test_owned_engine_is_disposed_once_at_shutdown(
    pair: Pair, database_url: str, backend: str
) -> None:
    app, made, disposals = owned_app(pair, database_url, backend)
    async with LifespanManager(app):
        assert disposals == []
    assert disposals == [1]
    await made[0].dispose()  # idempotent
    assert disposals == [1]


@asynccontextmanager
async def failing_startup(app: FastAPI) -> AsyncIterator[None]:
    raise LookupError("startup failed")
    yield


@asynccontextmanager
async def failing_shutdown(app: FastAPI) -> AsyncIterator[None]:
    yield
    raise LookupError("shutdown failed")


@pytest.mark.parametrize("lifespan", [failing_startup, failing_shutdown])
async def test_owned_engine_is_disposed_after_a_failed_lifespan(
    pair: Pair, database_url: str, backend: str, lifespan: StatelessLifespan[FastAPI]
) -> None:
    app, made, disposals = owned_app(pair, database_url, backend, lifespan=lifespan)
    with pytest.raises(LookupError):
        async with LifespanManager(app):
            pass
    assert disposals == [1]
    await made[0].dispose()
    assert disposals == [1]


async def test_custom_engine_is_never_disposed(make_app: MakeApp, engine: AsyncEngine) -> None:
    app = make_app()
    disposals = count_disposals(engine)
    async with LifespanManager(app):
        pass
    assert disposals == []


async def test_rebinding_a_live_proxy_to_another_database_is_refused(
    pair: Pair, engine: AsyncEngine, tmp_path: Path
) -> None:
    middleware, _ = pair
    first = middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    with pytest.raises(ProxyBindingError, match="create_middleware_and_session_proxy"):
        middleware(app=None, db_url=f"sqlite:///{tmp_path / 'other.db'}")  # type: ignore[arg-type]
    await first.dispose()
    second = middleware(app=None, db_url=f"sqlite:///{tmp_path / 'other.db'}")  # type: ignore[arg-type]
    await second.dispose()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "not neither"),
        ({"db_url": "sqlite://", "custom_engine": "engine"}, "not both"),
        ({"custom_engine": "engine", "engine_args": {"echo": True}}, "engine_args only apply"),
    ],
)
def test_middleware_needs_exactly_one_engine_source(
    engine: AsyncEngine, options: dict[str, object], message: str
) -> None:
    options = {key: engine if value == "engine" else value for key, value in options.items()}
    with pytest.raises(ValueError, match=message):
        SQLAlchemyMiddleware(app=None, **options)  # type: ignore[arg-type]


def query_app(
    middleware: type[SQLAlchemyMiddleware],
    proxy: SessionProxy,
    *,
    db_url: str,
    engine_args: dict[str, Any],
) -> FastAPI:
    app = FastAPI()
    app.add_middleware(middleware, db_url=db_url, engine_args=engine_args)

    @app.get("/")
    async def query() -> int:
        value: int = (await proxy.session.execute(text("SELECT 1"))).scalar_one()
        return value

    return app


async def test_fifty_apps_in_one_session(
    database_url: str, backend: str, make_client: MakeClient, items_table: None
) -> None:
    # Odd apps share the global `db` (same URL, so each new app takes the binding over);
    # even ones get a pair of their own.
    for number in range(50):
        middleware, proxy = (
            (SQLAlchemyMiddleware, db) if number % 2 else create_middleware_and_session_proxy()
        )
        app = query_app(middleware, proxy, db_url=database_url, engine_args=engine_args(backend))
        async with LifespanManager(app), make_client(app) as http:
            assert (await http.get("/")).json() == 1


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
# Starlette before 1.7 (which older FastAPI pins) reads an alias that anyio 4.15 deprecated.
@pytest.mark.filterwarnings("ignore:The anyio.abc.BlockingPortal alias is deprecated")
def test_test_client_without_with_serves_several_requests(
    pair: Pair, database_url: str, backend: str
) -> None:
    from fastapi.testclient import TestClient

    middleware, proxy = pair
    app = query_app(middleware, proxy, db_url=database_url, engine_args=engine_args(backend))
    http = TestClient(app)  # no `with`: no lifespan, and a new event loop per request
    assert [http.get("/").json() for _ in range(3)] == [1, 1, 1]
