"""`shielded()`: cleanup runs to its end however the caller is cancelled.

SQLAlchemy's own close survives most cancellations, so these tests drive the
mechanism directly with a cleanup that needs several awaits to finish.
"""

import asyncio

import anyio
import pytest

from app.db._cleanup import quietly, shielded


async def _slow_cleanup(steps: list[int]) -> None:
    for step in range(5):
        await asyncio.sleep(0.01)
        steps.append(step)


async def test_cleanup_finishes_before_an_anyio_cancellation_returns_control() -> None:
    steps: list[int] = []
    with anyio.CancelScope() as scope:
        scope.cancel()  # anyio delivers this again at every await inside the scope
        await shielded(_slow_cleanup(steps))

    assert scope.cancelled_caught
    assert steps == [0, 1, 2, 3, 4]


async def test_cancelled_error_reaches_the_caller_unchanged_after_cleanup() -> None:
    steps: list[int] = []
    task = asyncio.create_task(shielded(_slow_cleanup(steps)))
    await asyncio.sleep(0)
    task.cancel("deadline")

    with pytest.raises(asyncio.CancelledError, match="deadline"):
        await task
    assert steps == [0, 1, 2, 3, 4]


async def test_quietly_logs_a_failing_cleanup_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        raise OSError("connection reset")

    await quietly(failing())

    assert "database cleanup failed" in caplog.text
    assert "connection reset" in caplog.text
