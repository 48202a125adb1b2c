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


async def test_cleanup_that_only_yields_the_loop_also_finishes_and_returns_its_value() -> None:
    async def yielding() -> str:
        for _ in range(3):
            await asyncio.sleep(0)  # a bare yield, no future to wait for
        return "done"

    with anyio.CancelScope() as scope:
        scope.cancel()
        assert await shielded(yielding()) == "done"
    assert scope.cancelled_caught
    assert await shielded(yielding()) == "done"


async def test_a_cleanup_that_fails_raises_its_error_and_runs_in_the_callers_task() -> None:
    caller = asyncio.current_task()

    async def failing() -> None:
        assert asyncio.current_task() is caller  # no task of its own
        await asyncio.sleep(0.01)
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        await shielded(failing())


async def test_quietly_logs_a_failing_cleanup_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        raise OSError("connection reset")

    await quietly(failing())

    assert "database cleanup failed" in caplog.text
    assert "connection reset" in caplog.text
