"""The session layer: middleware, the `db` proxy, errors and helpers (re-exports only).

FastAPI's `SessionDep` lives in the `dependency` module, so that importing the package needs
only SQLAlchemy, Starlette and the standard library.
"""

from .engine import create_engine, create_session_factory
from .errors import (
    MissingSessionError,
    PoolTimeoutError,
    ProxyBindingError,
    SessionFinalizedError,
    SessionNotInitialisedError,
)
from .factory import create_middleware_and_session_proxy
from .middleware import SQLAlchemyMiddleware
from .proxy import SessionBlock, SessionProxy, db
from .urls import to_async_url

# The names fastapi-async-sqlalchemy users annotate with.
DBSessionMeta = SessionProxy
DBSessionType = SessionProxy

__all__ = [
    "DBSessionMeta",
    "DBSessionType",
    "MissingSessionError",
    "PoolTimeoutError",
    "ProxyBindingError",
    "SQLAlchemyMiddleware",
    "SessionBlock",
    "SessionFinalizedError",
    "SessionNotInitialisedError",
    "SessionProxy",
    "create_engine",
    "create_middleware_and_session_proxy",
    "create_session_factory",
    "db",
    "to_async_url",
]
