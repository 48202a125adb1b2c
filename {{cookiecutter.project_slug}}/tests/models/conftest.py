"""An engine on the session's test database with the scratch tables, and sessions on it.

The tests here commit for real (listeners such as after_commit only fire on a real
commit), so each uses keys of its own; the tables are dropped when the module ends.
"""

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_engine, create_session_factory
from app.events import install_listeners
from tests.models.scratch import ScratchBase


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    install_listeners()
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(ScratchBase.metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(ScratchBase.metadata.drop_all)
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture
def handle() -> str:
    """A member handle no other test uses."""
    return f"member-{uuid.uuid4().hex[:12]}"
