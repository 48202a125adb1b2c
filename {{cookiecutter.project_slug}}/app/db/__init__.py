"""The session layer's public surface: code outside `app/db` imports its core from here.

The core is private modules, one concept each. Each imports only modules of the layers
below its own (import-linter holds them to it: `make lint`), from the top down:

    _dependency     the FastAPI dependency that yields the request's session
    _middleware     SQLAlchemyMiddleware, and a middleware + proxy pair per database
    _proxy          the `db` proxy, `db.session` and `async with db():`
    _multi          `db(multi_sessions=True)`: a session per task, at most N at once
    _engine         engines and session factories with the layer's defaults
    _pool           the pools' typed errors, how many connections a pool hands out, and
                    whether one is free
    _listeners      the listeners that make the mixins and normalisers work
    _base           the models' declarative base and constraint naming
    _queries        query helpers: lookups, race-safe get-or-create, pages, counts
    _unit_of_work   the lazily created session of one request or `db()` block, and the
                    context that holds the main database's
    _cleanup        ending sessions: commit or roll back, close, survive cancellation
    _mixins         timestamp and soft-delete columns
    _column_types   column types that behave alike on every backend
    _urls           one database URL for sync tools and async drivers
    _errors         the errors, each naming its fix

Two opt-in modules sit on top, imported by name and by nothing in the core, so a copy of
the folder that needs neither can delete them:

    replica         read replicas: which reads go there, and the replica's health
    standalone      `standalone_read()`: one statement on a connection of its own, in
                    autocommit; `StandaloneReader` for the page helpers

`SessionDep`, `get_session` and `session_dependency` import FastAPI, so they load on
first use: the rest of the package needs only SQLAlchemy, Starlette and the standard
library.
"""

import typing

from ._base import NAMING_CONVENTION, Base
from ._column_types import PortableJSON, UTCDateTime, UtcNow
from ._engine import create_engine, create_session_factory
from ._errors import (
    CapacityError,
    DatabaseUnavailableError,
    MissingSessionError,
    PoolTimeoutError,
    ProxyBindingError,
    SessionFinalizedError,
    SessionNotInitialisedError,
)
from ._listeners import NORMALIZE
from ._middleware import SQLAlchemyMiddleware, create_middleware_and_session_proxy
from ._mixins import INCLUDE_DELETED, CreatedAtMixin, SoftDeleteMixin, TimestampMixin, utc_now
from ._pool import has_free_connection, pool_capacity
from ._proxy import SessionBlock, SessionProxy, db
from ._queries import (
    KeyColumn,
    QueryMixin,
    Reader,
    count_rows,
    estimate_rows,
    fetch_keyset_page,
    fetch_page,
)
from ._urls import to_async_url

if typing.TYPE_CHECKING:
    from ._dependency import SessionDep, get_session, session_dependency

# The names fastapi-async-sqlalchemy users annotate with.
DBSessionMeta = SessionProxy
DBSessionType = SessionProxy

__all__ = [
    "INCLUDE_DELETED",
    "NAMING_CONVENTION",
    "NORMALIZE",
    "Base",
    "CapacityError",
    "CreatedAtMixin",
    "DBSessionMeta",
    "DBSessionType",
    "DatabaseUnavailableError",
    "KeyColumn",
    "MissingSessionError",
    "PoolTimeoutError",
    "PortableJSON",
    "ProxyBindingError",
    "QueryMixin",
    "Reader",
    "SQLAlchemyMiddleware",
    "SessionBlock",
    "SessionDep",
    "SessionFinalizedError",
    "SessionNotInitialisedError",
    "SessionProxy",
    "SoftDeleteMixin",
    "TimestampMixin",
    "UTCDateTime",
    "UtcNow",
    "count_rows",
    "create_engine",
    "create_middleware_and_session_proxy",
    "create_session_factory",
    "db",
    "estimate_rows",
    "fetch_keyset_page",
    "fetch_page",
    "get_session",
    "has_free_connection",
    "pool_capacity",
    "session_dependency",
    "to_async_url",
    "utc_now",
]

_NEEDS_FASTAPI = frozenset({"SessionDep", "get_session", "session_dependency"})


def __getattr__(name: str) -> object:
    # Deferred, not hiding a cycle: `_dependency` imports FastAPI, which the rest of the
    # package does without.
    if name in _NEEDS_FASTAPI:
        from . import _dependency

        value = getattr(_dependency, name)
        globals()[name] = value  # later lookups find it without calling this again
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
