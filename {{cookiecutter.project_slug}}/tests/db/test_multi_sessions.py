"""`db(multi_sessions=True)`: a session per task, bounded connections, every session ended."""

import asyncio
import inspect
from collections.abc import Iterator

import pytest
import sqlalchemy.exc
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import CapacityError, MissingSessionError, SessionProxy
from tests.pools import queue_pool

from .conftest import MakeApp, MakeClient, Pair, items, names


@pytest.fixture
def bound(pair: Pair, engine: AsyncEngine) -> SessionProxy:
    middleware, proxy = pair
    middleware(app=None, custom_engine=engine)  # type: ignore[arg-type]
    return proxy


@pytest.fixture
def peak(engine: AsyncEngine) -> Iterator[dict[str, int]]:
    """The most connections the test engine had checked out at once."""
    state = {"now": 0, "peak": 0}

    def checkout(*args: object) -> None:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])

    def checkin(*args: object) -> None:
        state["now"] -= 1

    event.listen(engine.sync_engine.pool, "checkout", checkout)
    event.listen(engine.sync_engine.pool, "checkin", checkin)
    yield state
    event.remove(engine.sync_engine.pool, "checkout", checkout)
    event.remove(engine.sync_engine.pool, "checkin", checkin)


async def test_each_task_gets_its_own_session_and_keeps_it(bound: SessionProxy) -> None:
    async def sessions() -> tuple[object, object]:
        first = bound.session
        await first.execute(text("SELECT 1"))
        return first, bound.session

    async with bound(multi_sessions=True):
        results = await asyncio.gather(sessions(), sessions())
        owner = (bound.session, bound.session)
    assert all(first is again for first, again in [*results, owner])
    assert len({id(first) for first, _ in [*results, owner]}) == 3  # all still referenced


async def test_asyncio_gather_over_queries_works(bound: SessionProxy, engine: AsyncEngine) -> None:
    async def query(n: int) -> int:
        value: int = (await bound.session.execute(text(f"SELECT {n}"))).scalar_one()
        return value

    async with bound(multi_sessions=True):
        # list(): typeshed gives gather() of two a tuple type; it returns a list.
        assert list(await asyncio.gather(query(1), query(2))) == [1, 2]
    assert queue_pool(engine).checkedout() == 0


async def test_asyncio_gather_on_one_session_raises_sqlalchemys_error(bound: SessionProxy) -> None:
    async def query() -> None:
        await bound.session.execute(text("SELECT 1"))

    async with bound():
        results = await asyncio.gather(*(query() for _ in range(4)), return_exceptions=True)
    errors = [result for result in results if isinstance(result, Exception)]
    assert errors
    assert all(isinstance(error, sqlalchemy.exc.InvalidRequestError) for error in errors)


async def test_gather_never_exceeds_max_concurrent(
    bound: SessionProxy, engine: AsyncEngine, peak: dict[str, int]
) -> None:
    async def query(n: int) -> int:
        await asyncio.sleep(0.01)
        value: int = (await bound.session.execute(text(f"SELECT {n}"))).scalar_one()
        return value

    async with bound(multi_sessions=True, max_concurrent=1):
        assert await bound.gather(*(query(n) for n in range(6))) == list(range(6))
    assert peak["peak"] == 1
    assert queue_pool(engine).checkedout() == 0


async def test_max_concurrent_counts_the_outer_connection(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient, peak: dict[str, int]
) -> None:
    app = make_app()

    @app.get("/")
    async def fan_out() -> list[int]:
        await proxy.session.execute(text("SELECT 1"))  # the request now holds one
        async with proxy(multi_sessions=True, max_concurrent=2):
            selected: list[int] = await proxy.gather(*(_select(proxy, n) for n in range(5)))
            return selected

    async with make_client(app) as http:
        assert (await http.get("/")).json() == list(range(5))
    assert peak["peak"] == 2


async def test_limit_is_capped_by_the_pool_so_it_never_waits_on_itself(
    bound: SessionProxy, engine: AsyncEngine, peak: dict[str, int]
) -> None:
    # The pool holds two connections and max_concurrent asks for ten: with a 3 s pool
    # timeout, going past two would stall, then fail.
    async with bound(multi_sessions=True, max_concurrent=10):
        await bound.gather(*(_select(bound, n, pause=0.01) for n in range(8)))
    assert peak["peak"] == 2


async def test_no_room_left_for_the_block_is_refused(
    make_app: MakeApp, proxy: SessionProxy, make_client: MakeClient
) -> None:
    app = make_app()

    @app.get("/")
    async def fan_out() -> None:
        await proxy.session.execute(text("SELECT 1"))
        async with proxy(multi_sessions=True, max_concurrent=1):
            pass

    async with make_client(app) as http:
        with pytest.raises(CapacityError, match="No connection is left"):
            await http.get("/")


async def test_children_commit_on_their_own_and_a_failure_rolls_back_only_itself(
    bound: SessionProxy, engine: AsyncEngine
) -> None:
    async def write(name: str) -> None:
        await bound.session.execute(insert(items).values(name=name))
        if name == "fails":
            raise LookupError(name)

    async with bound(multi_sessions=True, commit_on_exit=True):
        results = await bound.gather(write("kept"), write("fails"), return_exceptions=True)
    assert isinstance(results[1], LookupError)
    assert await names(engine) == ["kept"]


async def test_without_commit_on_exit_children_roll_back(
    bound: SessionProxy, engine: AsyncEngine
) -> None:
    async with bound(multi_sessions=True):
        await bound.gather(_insert(bound, "not kept"))
    assert await names(engine) == []


async def test_failing_gather_stops_the_others_and_ends_every_session(
    bound: SessionProxy, engine: AsyncEngine
) -> None:
    finished: list[str] = []

    async def slow() -> None:
        await bound.session.execute(text("SELECT 1"))
        await asyncio.sleep(5)
        finished.append("slow")

    async def fails() -> None:
        await bound.session.execute(text("SELECT 1"))
        raise LookupError("first failure")

    with pytest.raises(LookupError):
        async with bound(multi_sessions=True):
            await bound.gather(slow(), fails())
    assert finished == []
    assert queue_pool(engine).checkedout() == 0


async def test_failing_gather_closes_the_coroutines_it_never_started(
    bound: SessionProxy, engine: AsyncEngine
) -> None:
    async def fails() -> None:
        raise LookupError("first failure")

    async def waits_for_a_slot() -> None:
        await bound.session.execute(text("SELECT 1"))

    # One slot: when the first child fails, the rest are still queued for it, and a
    # queued coroutine that is never started would warn "was never awaited".
    children = [fails(), *(waits_for_a_slot() for _ in range(3))]
    with pytest.raises(LookupError):
        async with bound(multi_sessions=True, max_concurrent=1):
            await bound.gather(*children)
    # Each one finished or was closed.
    assert all(inspect.getcoroutinestate(child) == inspect.CORO_CLOSED for child in children)
    assert queue_pool(engine).checkedout() == 0


async def test_child_tasks_sessions_end_with_the_task(
    bound: SessionProxy, engine: AsyncEngine
) -> None:
    returned = asyncio.Event()
    event.listen(engine.sync_engine, "checkin", lambda *_: returned.set())
    async with bound(multi_sessions=True, commit_on_exit=True):
        task = asyncio.create_task(_insert(bound, "from a task"))
        await task
        # The task's session is ended by a cleanup task, whose rollback is a round trip
        # to the database: wait for it, with a deadline for a loaded machine.
        async with asyncio.timeout(30):
            await returned.wait()
        assert queue_pool(engine).checkedout() == 0
    assert await names(engine) == ["from a task"]


async def test_connection_yields_the_tasks_session_and_ends_it(
    bound: SessionProxy, engine: AsyncEngine
) -> None:
    async with bound(multi_sessions=True, max_concurrent=2):
        async with bound.connection() as session:
            assert session is bound.session
            await session.execute(text("SELECT 1"))
        assert queue_pool(engine).checkedout() == 0


async def test_gather_refuses_tasks(bound: SessionProxy) -> None:
    async with bound(multi_sessions=True):
        task = asyncio.create_task(asyncio.sleep(0))
        with pytest.raises(TypeError, match="takes coroutines, not tasks"):
            await bound.gather(task)
        await task


async def test_gather_needs_a_multi_sessions_block(bound: SessionProxy) -> None:
    # A plain block's connection() is its own session (tests/db/test_drop_in.py); gather()
    # would run concurrent tasks on that one session, so it is refused.
    async with bound():
        with pytest.raises(MissingSessionError, match="multi_sessions=True"):
            await bound.gather(asyncio.sleep(0))


async def test_direct_access_beyond_the_limit_names_the_fix(bound: SessionProxy) -> None:
    async with bound(multi_sessions=True, max_concurrent=1):
        bound.session  # noqa: B018 - the owner takes the only slot
        with pytest.raises(CapacityError, match=r"db\.gather"):
            await asyncio.create_task(_select(bound, 1))


async def _select(proxy: SessionProxy, n: int, pause: float = 0) -> int:
    value: int = (await proxy.session.execute(text(f"SELECT {n}"))).scalar_one()
    await asyncio.sleep(pause)  # holding the connection
    return value


async def _insert(proxy: SessionProxy, name: str) -> None:
    await proxy.session.execute(insert(items).values(name=name))
