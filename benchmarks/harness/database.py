"""The benchmark's PostgreSQL databases: created when missing, rebuilt on every run."""

import asyncio
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = ["name", "prepare", "recreate", "sqlalchemy_url", "with_database"]

SCHEMA = """
DROP TABLE IF EXISTS items;
CREATE TABLE items (
    id serial PRIMARY KEY,
    name varchar(100) NOT NULL,
    value integer NOT NULL
);
"""

SEED = """
INSERT INTO items (name, value)
SELECT 'item-' || n, n % 1000 FROM generate_series(1, $1::integer) AS n
"""


def with_database(dsn: str, name: str) -> str:
    """`dsn` with its database name replaced by `name`."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy URL of a libpq one, for the asyncpg driver."""
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def name(dsn: str) -> str:
    """The database name in `dsn`."""
    return urlsplit(dsn).path.lstrip("/")


async def _administer(dsn: str, *, drop: bool) -> None:
    """Create the database named in `dsn` when missing; with `drop`, drop it first."""
    database = name(dsn)
    server = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        # Identifiers cannot be bound as parameters; they are quoted by hand.
        if drop:
            await server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = await server.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await server.execute(f'CREATE DATABASE "{database}"')
    finally:
        await server.close()


async def _prepare(dsn: str, rows: int) -> str:
    await _administer(dsn, drop=False)

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA)
        await connection.execute(SEED, rows)
        # Fresh statistics and a visibility map, so every contestant gets
        # the same index-only plans from the first request on.
        await connection.execute("VACUUM ANALYZE items")
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return f"PostgreSQL {version.split()[0]}"


def prepare(dsn: str, *, rows: int) -> str:
    """Create the database named in `dsn` if needed, rebuild `items` with `rows` rows,
    and return the server's version."""
    return asyncio.run(_prepare(dsn, rows))


def recreate(dsn: str) -> None:
    """Drop the database named in `dsn` if it exists, and create it empty."""
    asyncio.run(_administer(dsn, drop=True))
