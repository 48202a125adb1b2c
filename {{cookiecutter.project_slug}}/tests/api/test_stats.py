"""The /stats dashboard: several counts at once, each on a session of its own."""

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.settings import Settings
from tests.conftest import serve
from tests.factories import make_note, make_user
from tests.pools import COUNTS_THE_APPS_POOL, queue_pool


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Every session of a test shares its one connection, which serves one query at a
    # time: the concurrent counts take turns.
    return settings.model_copy(update={"database_max_concurrent_queries": 1})


async def test_counts_users_and_live_recent_and_deleted_notes(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    ann, ben = await make_user(session), await make_user(session)
    await make_note(session, ann)
    await make_note(session, ben)
    await make_note(session, ben, deleted_days_ago=2)
    gone = await make_user(session)
    gone.soft_delete()
    await session.commit()

    response = await client.get("/stats")

    assert response.status_code == 200
    assert response.json() == {"users": 2, "notes": 2, "deleted_notes": 1, "notes_last_24h": 2}


async def test_a_deleted_users_notes_leave_every_count(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    stays = await make_user(session)
    await make_note(session, stays)
    gone = await make_user(session)
    await make_note(session, gone)
    await make_note(session, gone, deleted_days_ago=2)

    deleted = await client.delete(f"/users/{gone.id}")
    response = await client.get("/stats")

    assert deleted.status_code == 204
    assert response.json() == {"users": 1, "notes": 1, "deleted_notes": 0, "notes_last_24h": 1}


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
async def test_counts_run_concurrently_within_the_connection_limit(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(database_max_concurrent_queries=3)
    engine: AsyncEngine = app.state.engines["main"]
    in_use: list[int] = []

    def checked_out(*_: object) -> None:
        in_use.append(queue_pool(engine).checkedout())

    event.listen(engine.sync_engine, "checkout", checked_out)
    async with serve(app) as client:
        response = await client.get("/stats")

    assert response.status_code == 200
    # Four counts, at most three connections at a time, and more than one at once.
    assert 2 <= max(in_use) <= 3
    assert queue_pool(engine).checkedout() == 0


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
async def test_an_exhausted_pool_is_503_and_every_session_is_ended(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(database_pool_size=1, database_max_overflow=0, database_pool_timeout=0.1)
    engine: AsyncEngine = app.state.engines["main"]

    async with serve(app) as client:
        async with engine.connect():  # the pool's only connection
            response = await client.get("/stats")
        assert queue_pool(engine).checkedout() == 0
        recovered = await client.get("/stats")

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert recovered.status_code == 200
