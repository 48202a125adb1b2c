"""`SQLAlchemyMiddleware` (pure ASGI: each HTTP request gets a lazily created session), and
`create_middleware_and_session_proxy()`, which makes an independent pair per database."""

import logging
import traceback
from collections.abc import Iterable
from typing import Any, ClassVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._cleanup import quietly
from ._engine import create_engine, create_session_factory
from ._proxy import SessionProxy, db
from ._unit_of_work import UnitOfWork

__all__ = ["SQLAlchemyMiddleware", "create_middleware_and_session_proxy"]

logger = logging.getLogger(__name__)

_LIFESPAN_END = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)
_NO_ARGS: dict[str, Any] = {}


class SQLAlchemyMiddleware:
    """Binds `db` to an engine and ends each request's session before the response starts.

    With `commit_on_exit=True` a response below 400 commits first; a failed commit
    raises instead of sending the status, so the client gets a 500, never a 2xx for a
    lost write. Every other ending rolls back. An engine made from `db_url` belongs
    to the middleware and is disposed when the lifespan ends; a `custom_engine` is not.
    A request for one of `exclude_paths` (exact paths, such as a liveness probe's) gets
    no unit of work at all: its `db.session` raises `MissingSessionError`.
    """

    proxy: ClassVar[SessionProxy] = db

    def __init__(
        self,
        app: ASGIApp,
        *,
        db_url: str | URL | None = None,
        custom_engine: AsyncEngine | None = None,
        engine_args: dict[str, Any] | None = None,
        session_args: dict[str, Any] | None = None,
        commit_on_exit: bool = False,
        exclude_paths: Iterable[str] | None = None,
    ) -> None:
        if custom_engine is not None and db_url is None:
            if engine_args:
                raise ValueError(
                    "engine_args only apply to the engine made from db_url; configure a "
                    "custom_engine where you create it."
                )
            self.engine, self.owns_engine = custom_engine, False
        elif db_url is not None and custom_engine is None:
            self.engine, self.owns_engine = create_engine(db_url, engine_args), True
        else:
            raise ValueError(
                "SQLAlchemyMiddleware needs exactly one of db_url=... (the middleware then "
                "creates and disposes the engine) or custom_engine=... (you dispose it), "
                f"not {'both' if db_url is not None else 'neither'}."
            )
        self.app = app
        self.commit_on_exit = commit_on_exit
        self.exclude_paths = frozenset(exclude_paths or ())
        self._factory = create_session_factory(self.engine, session_args)
        self._disposed = False
        self._lifespan_running = False
        self.proxy.bind(self.engine, self._factory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exclude_paths:
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return

        unit = UnitOfWork(self._factory, _NO_ARGS)
        commit_on_exit = self.commit_on_exit

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Raising here, before the start message goes out, lets the app's error
                # handling answer 500 instead of the status the app chose.
                await unit.finish(commit=commit_on_exit and message["status"] < 400)
            await send(message)

        token = self.proxy.context.set(unit)
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            await unit.discard()
            raise
        else:
            if not unit.finalized:  # the app returned without starting a response
                await unit.finish(commit=False)
        finally:
            self.proxy.context.reset(token)
            if unit.session is not None and not self._lifespan_running and self.owns_engine:
                # Without a lifespan nothing says the next request runs on this event loop
                # (`TestClient(app)` without `with` starts one per request), and pooled
                # asyncpg connections die with their loop: close them while it still runs.
                await quietly(self.engine.dispose())

    async def dispose(self) -> None:
        """Unbind the proxy and dispose an engine made from `db_url`; safe to call twice."""
        if self._disposed:
            return
        self.proxy.unbind(self.engine)
        if self.owns_engine:
            await self.engine.dispose()
        self._disposed = True

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._lifespan_running = True
        if self._disposed:  # a second lifespan of the same app, e.g. `with TestClient(app)`
            self.proxy.bind(self.engine, self._factory)
            self._disposed = False

        async def send_wrapper(message: Message) -> None:
            if message["type"] in _LIFESPAN_END:
                self._lifespan_running = False
                try:
                    await self.dispose()
                except Exception:
                    if message["type"] != "lifespan.shutdown.complete":
                        logger.exception("disposing the engine failed after a failed lifespan")
                    else:
                        failure = traceback.format_exc()
                        message = {"type": "lifespan.shutdown.failed", "message": failure}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def create_middleware_and_session_proxy(
    name: str = "db",
) -> tuple[type[SQLAlchemyMiddleware], SessionProxy]:
    """A middleware class and the proxy it binds, sharing nothing with any other pair.

    `name` labels the proxy in its repr and in error messages.
    """

    class Middleware(SQLAlchemyMiddleware):
        __doc__ = SQLAlchemyMiddleware.__doc__
        proxy = SessionProxy(name)

    Middleware.__name__ = Middleware.__qualname__ = f"SQLAlchemyMiddleware[{name}]"
    return Middleware, Middleware.proxy
