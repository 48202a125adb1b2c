"""The errors the session layer raises, each worded to name its fix.

    RuntimeError
     ├── SessionNotInitialisedError   no middleware has bound the proxy yet
     ├── MissingSessionError          no request and no `async with db():` around the code
     │    └── SessionFinalizedError   the request (or block) session has already ended
     ├── ProxyBindingError            one proxy, two live databases
     └── CapacityError                the work needs more connections than it may have
          └── PoolTimeoutError        no pooled connection became free in time
    sqlalchemy.exc.OperationalError
     └── DatabaseUnavailableError     no connection to the database could be opened

A `CapacityError` is the client's cue to retry later (the service answers 503 with
`Retry-After`), not a bug. `PoolTimeoutError` is also a `sqlalchemy.exc.TimeoutError` and
a `TimeoutError`, so that existing handlers for either still catch it. So is a
`DatabaseUnavailableError`, whose database is down, unreachable or refusing the
credentials: the service answers 503 with `Retry-After` too, and recovers by itself when
the database does. It is an `OperationalError`, which code that catches SQLAlchemy's
errors already expects, and keeps the driver's error as `orig`.
"""

import sqlalchemy.exc

__all__ = [
    "CapacityError",
    "DatabaseUnavailableError",
    "MissingSessionError",
    "PoolTimeoutError",
    "ProxyBindingError",
    "SessionFinalizedError",
    "SessionNotInitialisedError",
]


class SessionNotInitialisedError(RuntimeError):
    """`db` is used before any `SQLAlchemyMiddleware` has bound it to an engine."""

    def __init__(self) -> None:
        super().__init__(
            "The database session is not initialised: add `SQLAlchemyMiddleware` to the app "
            "(app.add_middleware(SQLAlchemyMiddleware, db_url=...)); it binds `db` when the app "
            "starts or serves its first request."
        )


class MissingSessionError(RuntimeError):
    """`db.session` is read where no request and no `db()` block provides a session."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "No database session here: this code runs outside a request, so open "
            "`async with db():` around it (background tasks, startup code, scripts)."
        )


class SessionFinalizedError(MissingSessionError):
    """The session of a request (or `db()` block) is used after it was ended."""

    def __init__(self) -> None:
        super().__init__(
            "This database session has already ended: a request's session is committed or "
            "rolled back and closed when the response starts, a block's when it exits. In a "
            "background task or a streaming generator, open `async with db():` and use "
            "`db.session` inside it."
        )


class ProxyBindingError(RuntimeError):
    """A proxy that serves one live engine is asked to serve another database."""


class CapacityError(RuntimeError):
    """The work needs more connections than the pool or a `multi_sessions` block allows."""


class PoolTimeoutError(CapacityError, sqlalchemy.exc.TimeoutError, TimeoutError):
    """No pooled connection became free before the pool's timeout."""


class DatabaseUnavailableError(sqlalchemy.exc.OperationalError):
    """Opening a connection to the database failed: it is down, unreachable, or refuses
    the credentials. `orig` is the driver's error.

    The layer's engines (`create_engine()`) raise it for every driver: asyncpg's refused or
    timed-out socket, which is no DB-API error, and the DB-API errors of a failed connect.
    """

    def __init__(self, orig: Exception) -> None:
        super().__init__(None, None, orig)

    def __reduce__(self) -> tuple[type["DatabaseUnavailableError"], tuple[Exception | None]]:
        # DBAPIError pickles its own constructor's arguments, which this one does not take.
        return type(self), (self.orig,)

    @property
    def reason(self) -> str:
        """The driver error's class name, safe to show: its message may hold the host or user."""
        return type(self.orig).__name__

    def __str__(self) -> str:
        return (
            f"No connection to the database could be opened ({self.reason}: {self.orig}). "
            "Check that the server is running and reachable at the host and port of the "
            "database URL, and that its user and password are right."
        )
