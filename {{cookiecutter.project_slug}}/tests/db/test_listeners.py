"""The layer's listeners fire through its AsyncSessions: normalisers, updated_at, soft delete."""

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db import INCLUDE_DELETED, create_session_factory
from tests.scratch import Label, Member, Post


async def _reload(scratch_sessions: async_sessionmaker[AsyncSession], member: Member) -> Member:
    async with scratch_sessions() as session:
        statement = select(Member).filter_by(id=member.id).execution_options(**INCLUDE_DELETED)
        return (await session.execute(statement)).scalar_one()


async def test_before_insert_normalises_marked_columns_only(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member = Member(handle=f"  {handle.upper()} ", team="  Blue Team ")
        session.add(member)
        await session.commit()

    stored = await _reload(scratch_sessions, member)
    assert stored.handle == handle
    assert stored.team == "  Blue Team "


async def test_an_insert_stamps_both_timestamps_and_reuses_its_statement(
    scratch_engine: AsyncEngine, scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    # The columns' server default is for rows written with plain SQL. Were the ORM to
    # leave the timestamps to the columns' default, it would ask for them back
    # (eager_defaults="auto"), building a new INSERT statement on every flush, whose
    # cache key and result metadata SQLAlchemy then works out afresh.
    invoked: list[Any] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, *_: Any) -> None:
        if statement.startswith("INSERT"):
            invoked.append(context.invoked_statement)

    event.listen(scratch_engine.sync_engine, "before_cursor_execute", record)
    try:
        async with scratch_sessions() as session:
            members = [Member(handle=f"{handle}-{n}") for n in range(2)]
            for member in members:
                session.add(member)
                await session.flush()
            await session.commit()
    finally:
        event.remove(scratch_engine.sync_engine, "before_cursor_execute", record)

    first, second = invoked
    assert first is second
    for member in members:
        assert member.created_at == member.updated_at
        assert member.created_at.tzinfo is not None


async def test_an_explicit_created_at_wins_at_insert(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    chosen = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with scratch_sessions() as session:
        member = Member(handle=handle, created_at=chosen)
        session.add(member)
        await session.commit()

    stored = await _reload(scratch_sessions, member)
    assert stored.created_at == chosen
    assert stored.updated_at > chosen


async def test_before_update_normalises_and_moves_updated_at(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()
        inserted_at = member.updated_at

        member.handle = f" {handle.upper()}-Renamed"
        await session.commit()

    stored = await _reload(scratch_sessions, member)
    assert stored.handle == f"{handle}-renamed"
    assert stored.updated_at > inserted_at
    assert stored.created_at == member.created_at


async def test_updated_at_stays_when_only_a_collection_changes(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()
        inserted_at = member.updated_at

        (await member.awaitable_attrs.posts).append(Post(title="first"))
        await session.commit()

    assert (await _reload(scratch_sessions, member)).updated_at == inserted_at


async def test_an_explicit_updated_at_wins(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    chosen = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with scratch_sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()

        member.score = 5
        member.updated_at = chosen
        await session.commit()

    assert (await _reload(scratch_sessions, member)).updated_at == chosen


async def test_soft_deleted_rows_are_hidden_unless_asked_for(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member = Member(handle=handle, posts=[Post(title="kept"), Post(title="deleted")])
        session.add(member)
        await session.commit()
        member.posts[1].soft_delete()
        await session.commit()
        deleted_id = member.posts[1].id

    async with scratch_sessions() as session:
        posts = select(Post).filter_by(member_id=member.id)
        visible = (await session.execute(posts)).scalars().all()
        everything = (await session.execute(posts.execution_options(**INCLUDE_DELETED))).scalars()
        assert [post.title for post in visible] == ["kept"]
        assert sorted(post.title for post in everything) == ["deleted", "kept"]
        assert await Post.get_by_pk(session, deleted_id) is None
        with pytest.raises(NoResultFound):
            await Post.get_one(session, id=deleted_id)

    # Lazy loads follow the statement that loaded the parent.
    async with scratch_sessions() as session:
        loaded = await Member.get_one(session, id=member.id)
        assert [post.title for post in await loaded.awaitable_attrs.posts] == ["kept"]
    async with scratch_sessions() as session:
        statement = select(Member).filter_by(id=member.id).execution_options(**INCLUDE_DELETED)
        loaded = (await session.execute(statement)).scalar_one()
        assert len(await loaded.awaitable_attrs.posts) == 2


async def test_a_statement_run_again_is_filtered_again_and_asked_for_again(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    # The filtered form of a statement is kept for its next execution: it must hide a
    # row deleted in between, and still give way to INCLUDE_DELETED on any run.
    statement = select(Member).filter_by(handle=handle)
    async with scratch_sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()
        assert (await session.execute(statement)).scalar_one() is member

        member.soft_delete()
        await session.commit()
        assert (await session.execute(statement)).scalar_one_or_none() is None
        everything = statement.execution_options(**INCLUDE_DELETED)
        assert (await session.execute(everything)).scalar_one() is member
        assert (await session.execute(statement)).scalar_one_or_none() is None


async def test_a_soft_deleted_row_disappears_in_its_own_session(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()

        member.soft_delete()
        # Autoflush writes deleted_at before the query runs.
        assert await Member.get_by_pk(session, member.id) is None
        await session.commit()

    assert (await _reload(scratch_sessions, member)).is_deleted


async def test_a_value_that_normalises_to_the_stored_one_is_no_change(
    scratch_sessions: async_sessionmaker[AsyncSession], handle: str
) -> None:
    async with scratch_sessions() as session:
        member = Member(handle=handle)
        session.add(member)
        await session.commit()
        inserted_at = member.updated_at

        member.handle = f"  {handle.upper()}  "
        await session.commit()

    assert (await _reload(scratch_sessions, member)).updated_at == inserted_at


async def test_the_mixins_work_on_a_model_of_another_declarative_base(
    scratch_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with scratch_sessions() as session:
        label = Label(name="urgent")
        session.add(label)
        await session.commit()
        inserted_at = label.updated_at

        label.name = "very urgent"
        await session.commit()
        assert label.updated_at > inserted_at

        label.soft_delete()
        await session.commit()
        everything = select(Label).filter_by(id=label.id).execution_options(**INCLUDE_DELETED)
        assert (await session.execute(select(Label).filter_by(id=label.id))).first() is None
        assert (await session.execute(everything)).scalar_one() is label


class _OwnSession(Session):
    """A caller's own sync session class, as `session_args` may name it."""


async def test_a_session_class_of_the_callers_gets_the_filter_and_others_do_not(
    scratch_engine: AsyncEngine, scratch_sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with scratch_sessions() as session:
        label = Label(name="gone")
        label.soft_delete()
        session.add(label)
        await session.commit()
    query = select(Label).filter_by(id=label.id)

    own = create_session_factory(scratch_engine, {"sync_session_class": _OwnSession})
    async with own() as session:
        assert (await session.execute(query)).first() is None
    # A session the layer did not make is left as SQLAlchemy makes it.
    async with AsyncSession(scratch_engine) as session:
        assert (await session.execute(query)).scalar_one().name == "gone"


_WITHOUT_SOFT_DELETE = textwrap.dedent(
    """
    import asyncio

    from sqlalchemy import event, select
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    from app.db import create_engine, create_session_factory


    class Base(DeclarativeBase):
        pass


    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)


    async def main():
        engine = create_engine("sqlite://")
        sessions = create_session_factory(engine)
        seen = []
        listen = sessions.kw["sync_session_class"]
        event.listen(listen, "do_orm_execute", lambda state: seen.append(state.statement))
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        async with sessions() as session:
            statement = select(Item)
            await session.execute(statement)
        print(seen == [statement])
        await engine.dispose()


    asyncio.run(main())
    """
)


def test_an_app_without_soft_delete_models_runs_its_statements_unchanged() -> None:
    # In its own process: this suite maps SoftDeleteMixin models, which turn the filter on.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _WITHOUT_SOFT_DELETE],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == "True", result.stderr
