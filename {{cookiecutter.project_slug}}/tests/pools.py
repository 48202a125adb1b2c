"""The QueuePool behind an engine, for tests that count its checked-out connections."""

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

__all__ = ["queue_pool"]


def queue_pool(engine: AsyncEngine) -> QueuePool:
    """`engine`'s pool; only a QueuePool counts what it has checked out and in."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        raise TypeError(
            f"{engine.url.render_as_string()} has a {type(pool).__name__}, which counts no "
            "connections; give the test engine a QueuePool (the default for a file or server)."
        )
    return pool


# The reasons of the tests that stop holding behind PgBouncer, with DATABASE_POOLER=pgbouncer.
COUNTS_THE_APPS_POOL = (
    "it counts or exhausts the app's own connection pool, and behind PgBouncer the app "
    "keeps none (NullPool): PgBouncer queues a transaction rather than time it out"
)
CHECKS_THE_POOLS_BUDGET = (
    "it checks the budget of the app's pools against max_connections, and behind PgBouncer "
    "the app keeps none: the server connections are pgbouncer.ini's default_pool_size"
)
