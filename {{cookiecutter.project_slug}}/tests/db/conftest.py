"""Fixtures for the session layer: a small-pool engine, a table, fresh proxies, raw ASGI calls."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData, String, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from starlette.types import ASGIApp, Message

from app.db import SessionProxy, SQLAlchemyMiddleware, create_middleware_and_session_proxy
from tests.asgi import http_scope
from tests.conftest import POOLER_CONNECT_ARGS

APPLICATION_NAME = "session-layer-tests"


class Base(DeclarativeBase):
    metadata = MetaData()


class Item(Base):
    __tablename__ = "session_layer_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


metadata = Base.metadata
# The mapped class's `__table__` is typed as any FROM clause; the metadata's entry is a Table.
items = metadata.tables[Item.__tablename__]

# A middleware class and the proxy it binds, as `create_middleware_and_session_proxy()` makes.
Pair = tuple[type[SQLAlchemyMiddleware], SessionProxy]
MakeApp = Callable[..., FastAPI]
MakeClient = Callable[..., httpx.AsyncClient]


class CountingSession(Session):
    """A real Session that counts how many were made, to prove sessions are lazy."""

    created = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).created += 1
        super().__init__(*args, **kwargs)


@pytest.fixture(scope="session")
async def items_table(database_url: str) -> None:
    engine = create_async_engine(database_url, connect_args=POOLER_CONNECT_ARGS)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    await engine.dispose()


def engine_args(backend: str, **overrides: Any) -> dict[str, Any]:
    """A small pool, so that leaks and limits show at once; PG backends are labelled."""
    args: dict[str, Any] = {"pool_size": 2, "max_overflow": 0, "pool_timeout": 3}
    if backend == "postgresql":
        args["connect_args"] = {
            **POOLER_CONNECT_ARGS,
            "server_settings": {"application_name": APPLICATION_NAME},
        }
    return {**args, **overrides}


@pytest.fixture
async def engine(database_url: str, backend: str, items_table: None) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, **engine_args(backend))
    yield engine
    async with engine.begin() as connection:
        await connection.execute(items.delete())
    await engine.dispose()


@pytest.fixture
def pair() -> Pair:
    """A middleware class and proxy of their own, so tests never share `db`."""
    return create_middleware_and_session_proxy("test_db")


@pytest.fixture
def proxy(pair: Pair) -> SessionProxy:
    return pair[1]


@pytest.fixture
def make_app(pair: Pair, engine: AsyncEngine) -> MakeApp:
    """A FastAPI app with the pair's middleware on the test engine, and these options."""

    def make(
        *, session_args: dict[str, Any] | None = None, commit_on_exit: bool = False
    ) -> FastAPI:
        app = FastAPI()
        # Named, not **options: mypy can check a middleware class held in a variable only
        # against keywords it can see.
        app.add_middleware(
            pair[0], custom_engine=engine, session_args=session_args, commit_on_exit=commit_on_exit
        )
        return app

    return make


@pytest.fixture
def make_client() -> MakeClient:
    """Makes an httpx client that calls an ASGI app in-process (no lifespan)."""

    def make(app: ASGIApp, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    return make


async def names(engine: AsyncEngine) -> list[str]:
    """The committed item names, read through a connection of their own."""
    async with engine.connect() as connection:
        return list((await connection.execute(select(items.c.name).order_by("name"))).scalars())


async def call(
    app: ASGIApp,
    path: str = "/",
    *,
    on_send: Callable[[Message], Awaitable[None]] | None = None,
    disconnect: asyncio.Event | None = None,
) -> list[Message]:
    """One raw ASGI request; `disconnect` set means the client went away."""
    scope = http_scope(path)
    sent: list[Message] = []
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await (disconnect or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if on_send is not None:
            await on_send(message)
        sent.append(message)

    await app(scope, receive, send)
    return sent
