"""The benchmark's PostgreSQL databases: created when missing, rebuilt on every run."""

import asyncio
import hashlib
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = [
    "SERVICE_USERS",
    "name",
    "prepare",
    "recreate",
    "seed_service",
    "service_user_id",
    "sqlalchemy_url",
    "with_database",
]

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

# The baked service's example tables, filled after its migrations have built them.
# User ids are the md5 of a name the harness computes too (`service_user_id`), so
# its routes know an existing id before the database exists. The notes, which the
# export streams, are shared between the users in equal blocks of consecutive ids.
SEED_SERVICE_USERS = """
INSERT INTO users (id, email, username, full_name, preferences)
SELECT md5('bench-user-' || n)::uuid, 'seed-' || n || '@example.com', 'seed-' || n, '', '{}'
FROM generate_series(1, $1::integer) AS n
"""

SEED_SERVICE_NOTES = """
INSERT INTO notes (user_id, title, body)
SELECT md5('bench-user-' || ((n - 1) * $1::bigint / $2::integer + 1))::uuid,
       'note ' || n, 'Seeded for the benchmark: a short body of a few words.'
FROM generate_series(1, $2::integer) AS n
"""

# Users seeded into the service's database. Its user list counts and sorts the whole
# table on every request (there is no index on its order), so this stays small: the
# list then costs the database about as little as the other contestants' list.
SERVICE_USERS = 1000


def service_user_id(number: int) -> uuid.UUID:
    """The id of the seeded user `number` (from 1), as SEED_SERVICE_USERS computes it."""
    return uuid.UUID(hashlib.md5(f"bench-user-{number}".encode()).hexdigest())


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


async def _seed_service(dsn: str, users: int, notes: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute(SEED_SERVICE_USERS, users)
            await connection.execute(SEED_SERVICE_NOTES, users, notes)
        await connection.execute("VACUUM ANALYZE users, notes")
    finally:
        await connection.close()


def seed_service(dsn: str, *, users: int, notes: int) -> None:
    """Fill the baked service's migrated database named in `dsn`: `users` users and
    `notes` notes shared between them in equal blocks, in one statement each."""
    asyncio.run(_seed_service(dsn, users, notes))


def recreate(dsn: str) -> None:
    """Drop the database named in `dsn` if it exists, and create it empty."""
    asyncio.run(_administer(dsn, drop=True))
