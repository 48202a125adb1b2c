"""Twenty concurrent callers of get_or_create / update_or_create with one key share one row."""

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, AsyncSessionTransaction
from sqlalchemy.pool import NullPool

from app.db import create_engine, create_session_factory
from tests.scratch import Member

# Each holds a server connection at once. The template's own tests run two baked suites
# side by side on one server, and two races of fifty took 100 of its 100 connections
# ("sorry, too many clients already"); twenty race just as surely, behind the barrier.
CALLERS = 20


class _InsertWhenEveryoneHasLooked:
    """The helper's first savepoint (its INSERT) opens only once every caller has found
    nothing, so the race does not depend on how the machine schedules the callers."""

    def __init__(self, barrier: asyncio.Barrier, begin_nested: Callable[[], Any]) -> None:
        self._barrier = barrier
        self._begin_nested = begin_nested
        self._savepoint: AsyncSessionTransaction | None = None

    async def __aenter__(self) -> AsyncSessionTransaction:
        await self._barrier.wait()
        self._savepoint = self._begin_nested()
        return await self._savepoint.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._savepoint is not None
        await self._savepoint.__aexit__(*exc_info)


def _hold_the_first_insert(
    session: AsyncSession, barrier: asyncio.Barrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = session.begin_nested
    calls = 0

    def begin_nested() -> Any:
        nonlocal calls
        calls += 1
        return _InsertWhenEveryoneHasLooked(barrier, real) if calls == 1 else real()

    monkeypatch.setattr(session, "begin_nested", begin_nested)


@pytest.mark.postgresql
@pytest.mark.direct_connection(
    f"its {CALLERS} transactions wait at a barrier for one another, so each needs a server "
    "connection at once; PgBouncer's pool is smaller, and the callers without one never arrive"
)
@pytest.mark.parametrize("helper", ["get_or_create", "update_or_create"])
async def test_concurrent_callers_get_the_one_row(
    scratch_engine: AsyncEngine,
    database_url: str,
    handle: str,
    helper: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NullPool: every caller holds a connection (and a transaction) of its own.
    racing = create_engine(database_url, {"poolclass": NullPool})
    racing_sessions = create_session_factory(racing)
    conflicts = 0

    def count_conflicts(context: ExceptionContext) -> None:
        nonlocal conflicts
        if isinstance(context.sqlalchemy_exception, IntegrityError):
            conflicts += 1

    event.listen(racing.sync_engine, "handle_error", count_conflicts)
    # Everyone has looked the key up and found nothing before anyone inserts it.
    all_looked = asyncio.Barrier(CALLERS)

    async def caller(number: int) -> tuple[uuid.UUID, bool]:
        async with racing_sessions() as session:
            _hold_the_first_insert(session, all_looked, monkeypatch)
            helper_method: Any = getattr(Member, helper)
            member, created = await helper_method(
                session, handle=handle, defaults={"score": number}
            )
            # A conflict rolled back to the savepoint only: the transaction still works.
            await session.execute(select(func.count()).select_from(Member))
            await session.commit()
            return member.id, created

    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(caller(number) for number in range(CALLERS)))
    finally:
        elapsed = time.perf_counter() - started
        await racing.dispose()

    async with create_session_factory(scratch_engine)() as session:
        rows = (
            await session.execute(select(func.count()).select_from(Member).filter_by(handle=handle))
        ).scalar_one()
    ids = {member_id for member_id, _ in results}
    created = sum(was_created for _, was_created in results)
    print(
        f"\n{helper}: {CALLERS} callers, {rows} row(s) created, {conflicts} unique conflicts "
        f"recovered in savepoints, {elapsed:.2f} s"
    )
    assert rows == 1
    assert created == 1
    assert len(ids) == 1
    # The callers really raced: all but the winner hit the unique constraint.
    assert conflicts == CALLERS - 1
