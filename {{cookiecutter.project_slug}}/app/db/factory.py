"""`create_middleware_and_session_proxy()`: an independent middleware and proxy per database."""

from .middleware import SQLAlchemyMiddleware
from .proxy import SessionProxy

__all__ = ["create_middleware_and_session_proxy"]


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
