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
