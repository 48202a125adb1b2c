"""get_by_pk, get_one, get_or_create, update_or_create, keyset pages and counts.

The spelling is sqlalchemy-helpers': the session first, `defaults` and `create_defaults`.
"""

import gc
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import Receive, Scope, Send

from app.db import (
    INCLUDE_DELETED,
    MissingSessionError,
    SQLAlchemyMiddleware,
    _queries,
    count_rows,
    db,
    estimate_rows,
    fetch_keyset_page,
)
from tests.scratch import Member


async def test_get_by_pk_finds_the_row_or_returns_none(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()

        assert await Member.get_by_pk(session, member.id) is member
        assert await Member.get_by_pk(session, uuid.uuid4()) is None


async def test_get_by_pk_names_the_fix_when_the_session_is_left_out_positionally(
    scratch_sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(TypeError, match=r"Member\.get_by_pk\(pk=\.\.\.\)"):
        await Member.get_by_pk(uuid.uuid4())  # type: ignore[arg-type]


async def test_get_one_raises_for_none_and_for_many(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        session.add_all(
            [Member(handle=f"{handle}-1", team=handle), Member(handle=f"{handle}-2", team=handle)]
        )
        await session.commit()

        assert (await Member.get_one(session, handle=f"{handle}-1")).team == handle
        with pytest.raises(NoResultFound):
            await Member.get_one(session, handle=f"{handle}-missing")
        with pytest.raises(MultipleResultsFound):
            await Member.get_one(session, team=handle)


async def test_get_or_create_creates_once_and_applies_defaults_only_on_create(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        first, created = await Member.get_or_create(session, handle=handle, defaults={"score": 7})
        again, created_again = await Member.get_or_create(
            session, handle=handle, defaults={"score": 9}
        )
        await session.commit()

    assert (created, created_again) == (True, False)
    assert again is first
    assert again.score == 7


async def test_update_or_create_updates_an_existing_row(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member, created = await Member.update_or_create(
            session, handle=handle, defaults={"score": 1}
        )
        same, created_again = await Member.update_or_create(
            session, handle=handle, defaults={"score": 2}
        )
        await session.commit()

    async with scratch_sessions() as session:
        stored = await Member.get_one(session, handle=handle)
    assert (created, created_again) == (True, False)
    assert same is member
    assert stored.score == 2


async def test_update_or_create_uses_create_defaults_only_for_a_new_row(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member, created = await Member.update_or_create(
            session, handle=handle, defaults={"score": 1}, create_defaults={"team": "new"}
        )
        await session.commit()
        assert (created, member.score, member.team) == (True, 1, "new")

        same, created_again = await Member.update_or_create(
            session, handle=handle, defaults={"score": 2}, create_defaults={"team": "other"}
        )
        await session.commit()

    async with scratch_sessions() as session:
        stored = await Member.get_one(session, handle=handle)
    assert (created_again, same is member) == (False, True)
    assert (stored.score, stored.team) == (2, "new")


async def test_create_defaults_win_over_defaults_on_a_new_row(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member, created = await Member.get_or_create(
            session, handle=handle, defaults={"score": 1, "team": "a"}, create_defaults={"score": 5}
        )
        again, created_again = await Member.get_or_create(
            session, handle=handle, create_defaults={"score": 9}
        )
        await session.commit()

    assert (created, created_again) == (True, False)
    assert again is member
    assert (member.score, member.team) == (5, "a")


@pytest.mark.parametrize("helper", ["get_or_create", "update_or_create"])
async def test_a_row_committed_by_another_transaction_in_between_is_returned(
    scratch_sessions: async_sessionmaker[AsyncSession],
    handle: str,
    monkeypatch: pytest.MonkeyPatch,
    helper: str,
) -> None:
    """Another transaction commits the same key after our lookup and before our INSERT."""
    winner = Member(handle=handle, score=1)

    async def commit_the_winner() -> None:
        async with scratch_sessions() as other:
            other.add(winner)
            await other.commit()

    async with scratch_sessions() as session:
        _before_the_first_savepoint(session, monkeypatch, commit_the_winner)
        found, created = await getattr(Member, helper)(
            session, handle=handle, defaults={"score": 2}
        )
        # Our INSERT failed inside the savepoint only; the transaction goes on.
        count = (await session.execute(select(func.count()).select_from(Member))).scalar_one()
        await session.commit()

    assert created is False
    assert found.id == winner.id
    assert count >= 1
    assert found.score == (2 if helper == "update_or_create" else 1)


async def test_a_conflict_with_a_hidden_row_is_raised_and_leaves_the_transaction_usable(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        deleted = Member(handle=handle)
        deleted.soft_delete()
        session.add(deleted)
        await session.commit()

        # The soft-deleted row holds the unique handle but is not "got": the conflict
        # is real, so it is raised rather than swallowed.
        with pytest.raises(IntegrityError):
            await Member.get_or_create(session, handle=handle)
        kept, created = await Member.get_or_create(session, handle=f"{handle}-other")
        await session.commit()

    async with scratch_sessions() as session:
        everyone = select(Member).where(Member.handle.startswith(handle))
        rows = (
            (await session.execute(everyone.execution_options(**INCLUDE_DELETED))).scalars().all()
        )
    assert created is True
    assert sorted(row.handle for row in rows) == sorted([handle, kept.handle])


def _before_the_first_savepoint(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch, run: Callable[[], Awaitable[None]]
) -> None:
    """Make the session's next SAVEPOINT wait until `run()` has finished."""
    begin_nested = session.begin_nested

    class AfterRun:
        async def __aenter__(self) -> Any:
            monkeypatch.setattr(session, "begin_nested", begin_nested)
            await run()
            self.savepoint = begin_nested()
            return await self.savepoint.__aenter__()

        async def __aexit__(self, *exc_info: Any) -> None:
            await self.savepoint.__aexit__(*exc_info)

    monkeypatch.setattr(session, "begin_nested", AfterRun)


async def test_the_session_defaults_to_db_session(scratch_engine: AsyncEngine, handle: str) -> None:
    middleware = SQLAlchemyMiddleware(_no_app, custom_engine=scratch_engine)
    try:
        async with db(commit_on_exit=True):
            created, was_created = await Member.get_or_create(handle=handle)
            assert await Member.get_by_pk(pk=created.id) is created
            assert (await Member.get_one(handle=handle)).id == created.id
            _, was_updated_created = await Member.update_or_create(
                handle=handle, defaults={"score": 3}
            )
        async with db():
            stored = await Member.get_one(db.session, handle=handle)
    finally:
        await middleware.dispose()

    assert (was_created, was_updated_created) == (True, False)
    assert stored.score == 3


async def test_without_a_session_or_a_db_block_the_error_says_so(
    scratch_engine: AsyncEngine,
) -> None:
    middleware = SQLAlchemyMiddleware(_no_app, custom_engine=scratch_engine)
    try:
        with pytest.raises(MissingSessionError):
            await Member.get_one(handle="anyone")
    finally:
        await middleware.dispose()


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the middleware only binds db here; no request reaches it")


async def test_fetch_keyset_page_walks_a_key_with_ties_either_way_without_repeats(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        session.add_all(
            [Member(handle=f"{handle}-{n}", team=handle, score=n // 2) for n in range(7)]
        )
        await session.commit()
        query = select(Member).where(Member.team == handle)

        for descending in (False, True):
            seen: list[Member] = []
            after: tuple[Any, ...] | None = None
            while True:
                rows, after = await fetch_keyset_page(
                    session,
                    query,
                    key=(Member.score, Member.id),
                    limit=2,
                    after=after,
                    descending=descending,
                )
                seen += rows
                if after is None:
                    break
            expected = sorted(seen, key=lambda m: (m.score, m.id), reverse=descending)
            assert len(seen) == len(set(seen)) == 7
            assert [m.score for m in seen] == [m.score for m in expected]


async def test_fetch_keyset_page_of_columns_gives_rows_and_the_next_key(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        session.add_all([Member(handle=f"{handle}-{n}", team=handle, score=n) for n in range(3)])
        await session.commit()
        query = select(Member.handle, Member.score, Member.id).where(Member.team == handle)

        first, after = await fetch_keyset_page(
            session, query, key=(Member.score, Member.id), limit=2
        )
        rest, end = await fetch_keyset_page(
            session, query, key=(Member.score, Member.id), limit=2, after=after
        )

    assert [tuple(row[:2]) for row in first] == [(f"{handle}-0", 0), (f"{handle}-1", 1)]
    assert after == (1, first[1].id)
    assert [row.handle for row in rest] == [f"{handle}-2"]
    assert end is None


async def test_a_querys_page_statements_are_built_once_and_go_with_the_query(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    key = (Member.score, Member.id)
    async with scratch_sessions() as session:
        session.add_all([Member(handle=f"{handle}-{n}", team=handle, score=n) for n in range(5)])
        await session.commit()
        query = select(Member.score, Member.id).where(Member.team == handle)

        pages: list[list[int]] = []
        after: tuple[Any, ...] | None = None
        while True:
            rows, after = await fetch_keyset_page(session, query, key=key, limit=2, after=after)
            pages.append([row.score for row in rows])
            if after is None:
                break
        built = dict(_queries._page_statements[query])

    # Three pages, two statements: the first page's, and the one past a cursor.
    assert pages == [[0, 1], [2, 3], [4]]
    assert list(built) == [(*key, False, False), (*key, False, True)]
    # Nothing the cache keeps holds on to the query, so the query's entry goes with it.
    held = weakref.ref(query)
    del query, built
    gc.collect()
    assert held() is None


async def test_fetch_keyset_page_wants_one_value_per_key_column(
    scratch_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with scratch_sessions() as session:
        with pytest.raises(TypeError, match=r"after= needs 2 value"):
            await fetch_keyset_page(
                session, select(Member), key=(Member.score, Member.id), limit=1, after=(1,)
            )


async def test_count_rows_stops_one_past_its_bound(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        session.add_all([Member(handle=f"{handle}-{n}", team=handle) for n in range(5)])
        await session.commit()
        query = select(Member).where(Member.team == handle)

        assert await count_rows(session, query, at_most=10) == 5
        assert await count_rows(session, query, at_most=3) == 4


async def test_estimate_rows_is_a_number_or_none_and_takes_only_a_table(
    scratch_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with scratch_sessions() as session:
        estimate = await estimate_rows(session, Member.__table__)
        if session.get_bind().dialect.name == "sqlite":
            assert estimate is None  # SQLite keeps no estimate
        else:
            assert estimate is None or estimate >= 0
        with pytest.raises(TypeError, match="takes a table"):
            await estimate_rows(session, select(Member).subquery())
