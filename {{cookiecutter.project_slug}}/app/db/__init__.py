"""The session layer: middleware, the `db` proxy, models' base, errors and helpers (re-exports).

FastAPI's `SessionDep` lives in the `dependency` module, so that importing the package needs
only SQLAlchemy, Starlette and the standard library.
"""

from .base import NAMING_CONVENTION, Base
from .column_types import PortableJSON, UTCDateTime, UtcNow
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
from .mixins import INCLUDE_DELETED, CreatedAtMixin, SoftDeleteMixin, TimestampMixin, utc_now
from .proxy import SessionBlock, SessionProxy, db
from .queries import QueryMixin
from .urls import to_async_url

# The names fastapi-async-sqlalchemy users annotate with.
DBSessionMeta = SessionProxy
DBSessionType = SessionProxy

__all__ = [
    "INCLUDE_DELETED",
    "NAMING_CONVENTION",
    "Base",
    "CreatedAtMixin",
    "DBSessionMeta",
    "DBSessionType",
    "MissingSessionError",
    "PoolTimeoutError",
    "PortableJSON",
    "ProxyBindingError",
    "QueryMixin",
    "SQLAlchemyMiddleware",
    "SessionBlock",
    "SessionFinalizedError",
    "SessionNotInitialisedError",
    "SessionProxy",
    "SoftDeleteMixin",
    "TimestampMixin",
    "UTCDateTime",
    "UtcNow",
    "create_engine",
    "create_middleware_and_session_proxy",
    "create_session_factory",
    "db",
    "to_async_url",
    "utc_now",
]
