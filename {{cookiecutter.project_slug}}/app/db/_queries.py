"""Query helpers: the lookups every model inherits, race-safe get-or-create, and pages."""

from collections.abc import Mapping, Sequence
from typing import Any, Self, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper

from ._proxy import db

__all__ = ["QueryMixin", "fetch_page"]

T = TypeVar("T")

# A conflict is retried when the row it collided with is gone again by the time it is
# re-read (deleted, or hidden by the soft-delete filter). Past this many tries the
# conflict is real and is raised.
_ATTEMPTS = 3


class QueryMixin:
    """Class methods for the common lookups; each takes the session first.

    Leave the session out to use the request's `db.session`.
    """

    __mapper__: Mapper[Any]

    @classmethod
    def current_session(cls) -> AsyncSession:
        """The session a helper uses when called without one: the main database's `db.session`.

        Models of another database override it to return their own proxy's session.
        """
        return db.session

    @classmethod
    async def get_by_pk(cls, session: AsyncSession | None = None, /, pk: Any = None) -> Self | None:
        """The row with primary key `pk` (a tuple for a composite key), or None."""
        session = _resolve(session, cls, "get_by_pk")
        if pk is None:
            raise TypeError(f"{cls.__name__}.get_by_pk() needs the key: get_by_pk(session, pk).")
        columns = cls.__mapper__.primary_key
        values = pk if isinstance(pk, tuple) else (pk,)
        if len(values) != len(columns):
            raise TypeError(
                f"{cls.__name__} has a primary key of {len(columns)} column(s); "
                f"pass {len(columns)} value(s), not {len(values)}."
            )
        # A query rather than session.get(), so that a row soft-deleted in this very
        # session is not handed back from the identity map.
        criteria = [column == value for column, value in zip(columns, values, strict=True)]
        return (await session.execute(select(cls).where(*criteria))).scalar_one_or_none()

    @classmethod
    async def get_one(cls, session: AsyncSession | None = None, /, **filters: Any) -> Self:
        """The one row matching `filters`; raises NoResultFound or MultipleResultsFound."""
        session = _resolve(session, cls, "get_one")
        return (await session.execute(select(cls).filter_by(**filters))).scalar_one()

    @classmethod
    async def get_or_create(
        cls,
        session: AsyncSession | None = None,
        /,
        defaults: Mapping[str, Any] | None = None,
        create_defaults: Mapping[str, Any] | None = None,
        **keys: Any,
    ) -> tuple[Self, bool]:
        """The row matching `keys`, or a new one made from `keys`, `defaults` and
        `create_defaults` (the last wins where they overlap).

        Returns `(instance, created)`. Safe against concurrent callers: see `_get_or_create`.
        """
        session = _resolve(session, cls, "get_or_create")
        values = {**(defaults or {}), **(create_defaults or {})}
        return await _get_or_create(cls, session, keys, values, lock=False)

    @classmethod
    async def update_or_create(
        cls,
        session: AsyncSession | None = None,
        /,
        defaults: Mapping[str, Any] | None = None,
        create_defaults: Mapping[str, Any] | None = None,
        **keys: Any,
    ) -> tuple[Self, bool]:
        """Like get_or_create, but an existing row is updated with `defaults`.

        `defaults` apply on both paths, `create_defaults` only to a new row (as in
        sqlalchemy-helpers). The existing row is locked with `SELECT ... FOR UPDATE`
        before it is changed, so concurrent updates of the same row queue up instead of
        overwriting each other's reads.
        """
        session = _resolve(session, cls, "update_or_create")
        values = {**(defaults or {}), **(create_defaults or {})}
        instance, created = await _get_or_create(cls, session, keys, values, lock=True)
        if not created and defaults:
            # In a savepoint of its own, so that a failing update (a unique clash on one
            # of the new values, say) leaves the caller's transaction usable.
            async with session.begin_nested():
                for name, value in defaults.items():
                    setattr(instance, name, value)
        return instance, created


async def fetch_page(
    session: AsyncSession, query: Select[Any], *, limit: int, offset: int
) -> tuple[Sequence[Any], int]:
    """`limit` rows of `query` (which must be ordered) from `offset` on, and how many rows
    the whole query matches."""
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    total = await session.scalar(counted)
    rows = await session.scalars(query.limit(limit).offset(offset))
    return rows.all(), total or 0


async def _get_or_create(
    model: type[T],
    session: AsyncSession,
    keys: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    lock: bool,
) -> tuple[T, bool]:
    """Look the row up; if it is missing, insert it inside a SAVEPOINT.

    When another transaction inserts the same key first, the unique constraint
    rejects our INSERT; rolling back to the savepoint undoes only that INSERT, and the
    winner's row is read instead. The caller's own transaction is never poisoned.
    """
    if not keys:
        raise TypeError(
            f"{model.__name__}.get_or_create() needs the columns to look the row up by, "
            "as keywords: get_or_create(session, email=...)."
        )
    plain = select(model).filter_by(**keys)
    # FOR UPDATE when the caller will change the row; FOR SHARE otherwise, because
    # under REPEATABLE READ (MySQL's default) only a locking read sees a row that
    # another transaction committed after ours began.
    locking = plain.with_for_update(read=not lock).execution_options(populate_existing=True)
    statement = plain
    attempt = 0
    while True:
        attempt += 1
        found = (await session.execute(statement)).scalar_one_or_none()
        if found is not None and lock and statement is plain:
            # Lock only a row known to exist: on MySQL a locking read of a missing key
            # takes a gap lock, and concurrent inserters then deadlock on each other.
            found = (await session.execute(locking)).scalar_one_or_none()
        if found is not None:
            return found, False
        try:
            async with session.begin_nested():
                instance = model(**{**keys, **defaults})
                session.add(instance)
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
            statement = locking
            continue
        return instance, True


def _resolve(session: AsyncSession | None, model: type[QueryMixin], method: str) -> AsyncSession:
    if session is None:
        return model.current_session()
    if not isinstance(session, AsyncSession):
        raise TypeError(
            f"{model.__name__}.{method}() takes the AsyncSession as its first argument, "
            f"not {type(session).__name__}; to use the current db.session, leave it out "
            f"and pass everything else by keyword, e.g. {model.__name__}.{method}(pk=...)."
        )
    return session
