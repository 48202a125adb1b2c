"""The benchmark's PostgreSQL databases: created when missing, rebuilt and seeded on every run."""

import asyncio
import hashlib
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = [
    "SCALE_USERS",
    "SERVICE_USERS",
    "add_users",
    "items_seed",
    "name",
    "run",
    "service_seed",
    "service_user_id",
    "sqlalchemy_url",
    "with_database",
]

# Users seeded into the service's database: issue 15's list target is a page of 50 on a
# table of a million, at the cost of a page on a table of a thousand.
SERVICE_USERS = 1_000_000
# The table sizes of the scale benchmark, which measures the list and the reads on each.
SCALE_USERS = (1_000, 100_000, 1_000_000)


def items_seed(rows: int) -> tuple[str, ...]:
    """The statements that rebuild the shared `items` table with `rows` rows, and drop the
    service's tables that the baseline writes users into, for its migrations to build
    anew (`migrate_service_tables`)."""
    return (
        "DROP TABLE IF EXISTS notes, users, job_runs, alembic_version",
        "DROP TABLE IF EXISTS items",
        "CREATE TABLE items (id serial PRIMARY KEY, name varchar(100) NOT NULL, "
        "value integer NOT NULL)",
        "INSERT INTO items (name, value) "
        f"SELECT 'item-' || n, n % 1000 FROM generate_series(1, {rows:d}) AS n",
        # Fresh statistics and a visibility map, so every contestant gets the same
        # index-only plans from the first request on.
        "VACUUM ANALYZE items",
    )


def add_users(first: int, last: int) -> str:
    """The statement that adds the service's users number `first` to `last`.

    User ids are the md5 of a name that `service_user_id` computes too, so its routes
    know an existing id before the database exists. User n was created n seconds into
    2026, so the creation order is the numbers' order, with no two users tied.
    """
    return (
        "INSERT INTO users (id, email, username, full_name, preferences, created_at, updated_at) "
        "SELECT md5('bench-user-' || n)::uuid, 'seed-' || n || '@example.com', 'seed-' || n, "
        "'', '{}', timestamptz '2026-01-01 00:00:00+00' + n * interval '1 second', "
        "timestamptz '2026-01-01 00:00:00+00' + n * interval '1 second' "
        f"FROM generate_series({first:d}, {last:d}) AS n"
    )


def service_seed(*, users: int, notes: int) -> tuple[str, ...]:
    """The statements that fill the baked service's migrated tables: `add_users`, then the
    notes, which its export streams, shared between the users in equal blocks of
    consecutive ids."""
    return (
        add_users(1, users),
        "INSERT INTO notes (user_id, title, body) "
        f"SELECT md5('bench-user-' || ((n - 1) * {users:d}::bigint / {notes:d} + 1))::uuid, "
        "'note ' || n, 'Seeded for the benchmark: a short body of a few words.' "
        f"FROM generate_series(1, {notes:d}) AS n",
        "VACUUM ANALYZE users, notes",
    )


def service_user_id(number: int) -> uuid.UUID:
    """The id of the seeded user `number` (from 1), as `service_seed` computes it."""
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


async def _run(dsn: str, statements: list[str], recreate: bool) -> str:
    database = name(dsn)
    server = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        # Identifiers cannot be bound as parameters; they are quoted by hand.
        if recreate:
            await server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if not await server.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await server.execute(f'CREATE DATABASE "{database}"')
    finally:
        await server.close()
    connection = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
        version: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return f"PostgreSQL {version.split()[0]}"


def run(dsn: str, statements: Iterable[str] = (), *, recreate: bool = False) -> str:
    """Create the database named in `dsn` when missing (with `recreate`, drop it first),
    run `statements` in it one by one, and return the server's version."""
    return asyncio.run(_run(dsn, list(statements), recreate))
