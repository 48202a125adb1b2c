"""Pool capacity: how many connections a pool hands out at most, and whether one is free."""

from sqlalchemy.pool import Pool, QueuePool

__all__ = ["has_free_connection", "pool_capacity"]


def pool_capacity(pool: Pool) -> int | None:
    """How many connections `pool` hands out at most; None when it has no limit."""
    if isinstance(pool, QueuePool):
        max_overflow: int = pool._max_overflow  # no public accessor; stable since 1.x
        return None if max_overflow < 0 else pool.size() + max_overflow
    return None


def has_free_connection(pool: Pool) -> bool:
    """Whether a checkout from `pool` would succeed right now without waiting."""
    capacity = pool_capacity(pool)
    return capacity is None or (isinstance(pool, QueuePool) and pool.checkedout() < capacity)
