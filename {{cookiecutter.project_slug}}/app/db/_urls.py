"""Database URL translation: one URL, written for sync drivers, serves the async app too."""

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["to_async_url"]

# The driver used when a URL names none or names a sync one. Alembic and other sync
# tools read the same URL with their own default drivers.
_DEFAULT_ASYNC_DRIVER = {
    "postgresql": "asyncpg",
    "sqlite": "aiosqlite",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
}
_ASYNC_DRIVERS = {
    "postgresql": {"asyncpg", "psycopg", "psycopg_async"},
    "sqlite": {"aiosqlite"},
    "mysql": {"aiomysql", "asyncmy"},
    "mariadb": {"aiomysql", "asyncmy"},
}
_EXAMPLE = "postgresql://user:password@localhost:5432/app, mysql://user:password@localhost/app or sqlite:///./app.db"


def to_async_url(url: str | URL) -> URL:
    """`url` with an async driver: postgresql→asyncpg, sqlite→aiosqlite, mysql/mariadb→aiomysql.

    An async driver that is already named is kept. Anything else raises one ValueError
    that shows the URL with its password masked.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            f"{_mask(str(url))!r} is not a database URL; write it like {_EXAMPLE}."
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    # Heroku and some PaaS still hand out postgres://, which SQLAlchemy no longer accepts.
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in _DEFAULT_ASYNC_DRIVER:
        shown = parsed.render_as_string(hide_password=True)
        raise ValueError(
            f"{shown!r} names the unsupported database {backend!r}; use PostgreSQL, MySQL, "
            f"MariaDB or SQLite, written like {_EXAMPLE}."
        )
    if driver not in _ASYNC_DRIVERS[backend]:
        driver = _DEFAULT_ASYNC_DRIVER[backend]
    return parsed.set(drivername=f"{backend}+{driver}")


def _mask(raw: str) -> str:
    # The URL could not be parsed, so mask whatever sits between "user:" and "@".
    return re.sub(r":[^:/@]*@", ":***@", raw)
