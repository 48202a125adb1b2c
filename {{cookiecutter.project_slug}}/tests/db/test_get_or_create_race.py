"""Fifty concurrent callers of get_or_create / update_or_create with one key share one row."""

import asyncio
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from app.db import create_engine, create_session_factory
from tests.scratch import Member

CALLERS = 50


@pytest.mark.postgresql
@pytest.mark.parametrize("helper", ["get_or_create", "update_or_create"])
async def test_concurrent_callers_get_the_one_row(
    scratch_engine: AsyncEngine, database_url: str, handle: str, helper: str
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
    all_connected = asyncio.Barrier(CALLERS)

    async def caller(number: int) -> tuple[uuid.UUID, bool]:
        async with racing_sessions() as session:
            await session.connection()
            await all_connected.wait()
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
    # The callers really raced: most of them hit the unique constraint.
    assert conflicts > 0
