"""Read-replica routing, proved on the servers: the replica answers `pg_is_in_recovery()` true.

These tests need a PostgreSQL streaming replica of TEST_DATABASE_URL's server, named by
TEST_REPLICA_URL (any database: the tests use the one the suite creates on the primary,
which the replica receives). The template's own tests start such a replica and run this
module against it; elsewhere it skips, since a replica is optional infrastructure.
"""

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI
from pydantic import ValidationError
from sqlalchemy import func, insert, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import SQLAlchemyMiddleware, create_engine, create_session_factory, db
from app.db.replica import PRIMARY, Replica, use_primary
from app.settings import Settings, SettingsError
from tests.conftest import serve, terminate_backend
from tests.db.conftest import Item, items

pytestmark = pytest.mark.postgresql

REPLICA_URL = os.environ.get("TEST_REPLICA_URL")
# Long enough for the replica to replay a commit on a busy machine.
DEADLINE = 30.0

ON_REPLICA = select(func.pg_is_in_recovery())


@pytest.fixture(scope="module")
def replica_url(database_url: str, items_table: None) -> str:
    if not REPLICA_URL:
        pytest.skip("needs a streaming replica: set TEST_REPLICA_URL (tests/test_replica.py does)")
    database = make_url(database_url).database
    return make_url(REPLICA_URL).set(database=database).render_as_string(hide_password=False)


@pytest.fixture
async def replica(replica_url: str) -> AsyncIterator[Replica]:
    replica = Replica(replica_url, max_lag=60, engine_args={"pool_size": 2, "max_overflow": 0})
    give_up = asyncio.get_running_loop().time() + DEADLINE
    # The database was created on the primary moments ago; wait until the replica has it.
    while await replica.check() != "ok":
        assert asyncio.get_running_loop().time() < give_up, replica.state
        await asyncio.sleep(0.2)
    yield replica
    await replica.dispose()


@pytest.fixture
async def primary(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, {"pool_size": 2, "max_overflow": 0})
    yield engine
    async with engine.begin() as connection:
        await connection.execute(items.delete())
    await engine.dispose()


@pytest.fixture
def sessions(primary: AsyncEngine, replica: Replica) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(primary, replica.session_args())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def on_replica(session: AsyncSession) -> bool:
    return bool(await session.scalar(ON_REPLICA))


async def test_a_read_runs_on_the_replica(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        assert await on_replica(session)
        port = await session.scalar(select(func.inet_server_port()))
    assert port == make_url(REPLICA_URL or "").port


async def test_after_a_flush_every_read_uses_the_primary_even_after_the_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    name = f"item-{uuid.uuid4().hex[:8]}"
    async with sessions() as session:
        assert await on_replica(session)
        session.add(Item(name=name))
        await session.flush()
        assert not await on_replica(session)
        assert await session.scalar(select(Item.name).where(Item.name == name)) == name
        await session.commit()
        # The replica may not have replayed the commit yet: the session still reads its own.
        assert not await on_replica(session)
        assert await session.scalar(select(Item.name).where(Item.name == name)) == name


async def test_a_pending_object_is_flushed_to_the_primary_and_read_there(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    name = f"item-{uuid.uuid4().hex[:8]}"
    async with sessions() as session:
        session.add(Item(name=name))
        # Autoflush writes the item before this SELECT, which must therefore see it.
        assert await session.scalar(select(Item.name).where(Item.name == name)) == name
        assert not await on_replica(session)


async def test_a_core_write_pins_the_session_to_the_primary(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await session.execute(insert(items).values(name=f"item-{uuid.uuid4().hex[:8]}"))
        assert not await on_replica(session)


async def test_for_update_runs_on_the_primary_and_keeps_the_session_there(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        session.add(Item(name=f"item-{uuid.uuid4().hex[:8]}"))
        await session.commit()
    async with sessions() as session:
        locked = select(Item.id, func.pg_is_in_recovery()).limit(1).with_for_update()
        row = (await session.execute(locked)).one()
        assert row[1] is False
        assert not await on_replica(session)


async def test_the_primary_option_sends_one_statement_to_the_primary(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert await session.scalar(ON_REPLICA.execution_options(**PRIMARY)) is False
        assert await session.scalar(ON_REPLICA, execution_options=PRIMARY) is False
        assert await on_replica(session)  # the next read may use the replica again


async def test_use_primary_sends_the_rest_of_the_session_to_the_primary(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert await on_replica(session)
        use_primary(session)
        assert not await on_replica(session)


async def test_text_and_raw_connections_use_the_primary(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False
    async with sessions() as session:
        connection = await session.connection()
        assert await connection.scalar(ON_REPLICA) is False
        assert not await on_replica(session)


async def test_before_its_first_check_a_replica_is_not_used(
    primary: AsyncEngine, replica_url: str
) -> None:
    unchecked = Replica(replica_url)
    try:
        async with create_session_factory(primary, unchecked.session_args())() as session:
            assert not await on_replica(session)
    finally:
        await unchecked.dispose()


async def test_a_replica_too_far_behind_is_not_used_until_it_catches_up(
    primary: AsyncEngine, replica_url: str
) -> None:
    replica = Replica(replica_url, max_lag=0.5)
    admin = Replica(replica_url)
    sessions = create_session_factory(primary, replica.session_args())
    try:
        assert await replica.check() == "ok"
        async with admin.engine.connect() as connection:
            await connection.execute(text("SELECT pg_wal_replay_pause()"))
        try:
            give_up = asyncio.get_running_loop().time() + DEADLINE
            while not replica.state.startswith("lagging"):
                assert asyncio.get_running_loop().time() < give_up, replica.state
                async with primary.begin() as connection:  # WAL the replica cannot replay
                    await connection.execute(insert(items).values(name=uuid.uuid4().hex[:12]))
                await asyncio.sleep(0.2)
                await replica.check()
            async with sessions() as session:
                assert not await on_replica(session)
        finally:
            async with admin.engine.connect() as connection:
                await connection.execute(text("SELECT pg_wal_replay_resume()"))
        give_up = asyncio.get_running_loop().time() + DEADLINE
        while await replica.check() != "ok":
            assert asyncio.get_running_loop().time() < give_up, replica.state
            await asyncio.sleep(0.2)
        async with sessions() as session:
            assert await on_replica(session)
    finally:
        await replica.dispose()
        await admin.dispose()


@asynccontextmanager
async def _one_connection_replica(
    primary: AsyncEngine, replica_url: str
) -> AsyncIterator[tuple[Replica, Replica, async_sessionmaker[AsyncSession]]]:
    """A replica whose pool holds one connection, an admin replica to kill it from, and
    sessions that route to the first."""
    replica = Replica(replica_url, engine_args={"pool_size": 1, "max_overflow": 0})
    admin = Replica(replica_url)
    try:
        assert await replica.check() == "ok"
        yield replica, admin, create_session_factory(primary, replica.session_args())
    finally:
        await replica.dispose()
        await admin.dispose()


async def test_a_replica_connection_killed_in_the_pool_is_replaced_at_checkout(
    primary: AsyncEngine, replica_url: str
) -> None:
    async with _one_connection_replica(primary, replica_url) as (replica, admin, sessions):
        async with sessions() as session:
            pid = (await session.execute(select(func.pg_backend_pid()))).scalar_one()
        async with admin.engine.connect() as connection:
            await terminate_backend(connection, pid)
        async with sessions() as session:
            # The pool saw the connection close and lends a new one: still the replica.
            assert await on_replica(session)
            assert (await session.execute(select(func.pg_backend_pid()))).scalar_one() != pid
        assert replica.state == "ok"


async def test_a_read_on_a_killed_replica_connection_is_retried_on_the_primary(
    primary: AsyncEngine, replica_url: str
) -> None:
    # Killed while the session holds it, the connection fails the read itself.
    async with _one_connection_replica(primary, replica_url) as (replica, admin, sessions):
        async with sessions() as session:
            pid = (await session.execute(select(func.pg_backend_pid()))).scalar_one()
            async with admin.engine.connect() as connection:
                await terminate_backend(connection, pid)
            assert not await on_replica(session)  # answered by the primary, not an error
            assert replica.state.startswith("down")
            await session.commit()  # the broken replica connection does not fail it
        assert await replica.check() == "ok"


async def test_a_replica_that_refuses_connections_costs_no_read(
    primary: AsyncEngine, replica: Replica
) -> None:
    nowhere = make_url(REPLICA_URL or "").set(port=free_port())
    gone = Replica(nowhere.render_as_string(hide_password=False))
    gone.state = replica.state  # it answered at its last check and is gone now
    try:
        async with create_session_factory(primary, gone.session_args())() as session:
            assert not await on_replica(session)
            await session.commit()
        assert gone.state.startswith("down")
        assert (await gone.check()).startswith("down: unreachable")
    finally:
        await gone.dispose()


def _routed_app(primary: AsyncEngine, replica: Replica) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        replica.start_monitoring()
        try:
            yield
        finally:
            await replica.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/read")
    async def read() -> dict[str, bool]:
        return {"on_replica": await on_replica(db.session)}

    @app.post("/write-then-read")
    async def write_then_read() -> dict[str, object]:
        name = f"item-{uuid.uuid4().hex[:8]}"
        db.session.add(Item(name=name))
        await db.session.flush()
        found = await db.session.scalar(select(Item.name).where(Item.name == name))
        return {"on_replica": await on_replica(db.session), "found": found == name}

    def primary_only() -> None:
        use_primary(db.session)

    @app.get("/fresh", dependencies=[Depends(primary_only)])
    async def fresh() -> dict[str, bool]:
        return {"on_replica": await on_replica(db.session)}

    app.add_middleware(
        SQLAlchemyMiddleware,
        custom_engine=primary,
        commit_on_exit=True,
        session_args=replica.session_args(),
    )
    return app


async def test_requests_read_from_the_replica_and_their_own_writes_from_the_primary(
    primary: AsyncEngine, replica_url: str
) -> None:
    replica = Replica(replica_url, check_interval=0.2)
    app = _routed_app(primary, replica)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # The app's lifespan checks the replica while it runs.
            give_up = asyncio.get_running_loop().time() + DEADLINE
            while replica.state != "ok":
                assert asyncio.get_running_loop().time() < give_up, replica.state
                await asyncio.sleep(0.1)
            assert (await client.get("/read")).json() == {"on_replica": True}
            written = await client.post("/write-then-read")
            assert written.json() == {"on_replica": False, "found": True}
            assert (await client.get("/fresh")).json() == {"on_replica": False}
            assert (await client.get("/read")).json() == {"on_replica": True}
    assert replica.state == "ok"  # disposed with the lifespan, after the last check


def test_a_replica_url_that_is_not_postgresql_is_one_clear_configuration_error() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(secret_key="test-secret", database_replica_url="mysql://app@replica/app")
    message = str(SettingsError.from_validation_error(raised.value))
    assert "DATABASE_REPLICA_URL" in message
    assert "supported on PostgreSQL only, not mysql" in message
    with pytest.raises(ValueError, match="PostgreSQL only, not sqlite"):
        Replica("sqlite+aiosqlite:///:memory:")


def test_an_empty_replica_url_turns_the_replica_off() -> None:
    settings = Settings(secret_key="test-secret", database_replica_url="")
    assert settings.database_replica_url is None


async def test_readiness_reports_an_unreachable_replica_and_stays_ready(
    make_live_app: Callable[..., FastAPI], database_urls: dict[str, str]
) -> None:
    nowhere = make_url(database_urls["main"]).set(port=free_port())
    app = make_live_app(database_replica_url=nowhere.render_as_string(hide_password=False))
    async with serve(app) as client:
        answer = await client.get("/health/ready")
        assert answer.status_code == 200, answer.text
        assert answer.json()["replica"].startswith("down: unreachable ("), answer.text
        # Reads go to the primary meanwhile.
        assert app.state.replica.state.startswith("down")


async def test_readiness_reports_a_replica_in_use_then_lagging_and_stays_ready(
    make_live_app: Callable[..., FastAPI],
    database_urls: dict[str, str],
    replica_url: str,
    primary: AsyncEngine,
) -> None:
    database = make_url(database_urls["main"]).database
    url = make_url(replica_url).set(database=database).render_as_string(hide_password=False)
    app = make_live_app(database_replica_url=url, database_replica_max_lag=0.5)
    admin = Replica(replica_url)
    async with serve(app) as client:

        async def replica_state(prefix: str) -> None:
            give_up = asyncio.get_running_loop().time() + DEADLINE
            while True:
                answer = await client.get("/health/ready")
                assert answer.status_code == 200, answer.text
                if answer.json()["replica"].startswith(prefix):
                    return
                assert asyncio.get_running_loop().time() < give_up, answer.text
                async with primary.begin() as connection:  # WAL for the replica to replay
                    await connection.execute(insert(items).values(name=uuid.uuid4().hex[:12]))
                await asyncio.sleep(0.2)

        await replica_state("ok")
        async with admin.engine.connect() as connection:
            await connection.execute(text("SELECT pg_wal_replay_pause()"))
        try:
            await replica_state("lagging: ")
        finally:
            async with admin.engine.connect() as connection:
                await connection.execute(text("SELECT pg_wal_replay_resume()"))
            await admin.dispose()
        await replica_state("ok")
