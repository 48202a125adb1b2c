"""Query helpers: the lookups every model inherits, race-safe get-or-create, pages and counts."""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import (
    BindParameter,
    ClauseElement,
    ColumnElement,
    Connection,
    Engine,
    Executable,
    FromClause,
    Integer,
    Result,
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapper
from sqlalchemy.sql.elements import KeyedColumnElement

from ._unit_of_work import main_session

__all__ = [
    "KeyColumn",
    "QueryMixin",
    "Reader",
    "count_rows",
    "estimate_rows",
    "fetch_keyset_page",
    "fetch_page",
]

T = TypeVar("T")

# A column of a keyset page's key: a model's attribute (`User.id`), or its table's column
# (`User.__table__.c.id`) for a Core statement, which ORM attributes would turn into an
# ORM one.
KeyColumn = InstrumentedAttribute[Any] | KeyedColumnElement[Any]


class Reader(Protocol):
    """What the page and count helpers read through: an `AsyncSession`, or anything that
    runs a statement as it does (`StandaloneReader` of app/db/standalone.py)."""

    async def execute(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Result[Any]: ...

    def get_bind(self, *, clause: ClauseElement | None = None) -> Engine | Connection: ...


# A conflict is retried when the row it collided with is gone again by the time it is
# re-read (deleted, or hidden by the soft-delete filter). Past this many tries the
# conflict is real and is raised.
_ATTEMPTS = 3

# Each model's lookup by primary key, built on first use: a statement made once is
# compiled once, where one built per call costs its construction and cache key each time.
_BY_PRIMARY_KEY: dict[type, Select[Any]] = {}


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
        return main_session()

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
        statement = _BY_PRIMARY_KEY.get(cls)
        if statement is None:
            keys = [column == bindparam(f"pk_{n}") for n, column in enumerate(columns)]
            statement = _BY_PRIMARY_KEY[cls] = select(cls).where(*keys)
        parameters = {f"pk_{n}": value for n, value in enumerate(values)}
        found: Self | None = (await session.execute(statement, parameters)).scalar_one_or_none()
        return found

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


async def fetch_keyset_page(
    session: Reader,
    query: Select[*tuple[Any, ...]],
    *,
    key: Sequence[KeyColumn],
    limit: int,
    after: Sequence[Any] | None = None,
    descending: bool = False,
) -> tuple[Sequence[Any], tuple[Any, ...] | None]:
    """`limit` rows of `query` in the order of `key`, starting after the row whose key is
    `after`; and the key of the page's last row when more rows follow, else None.

    `key` is a list of the model's columns that together are unique (end it with the
    primary key), and an index should hold them in that order: then the database reads
    `limit` rows however deep the page. `query` is not ordered; this orders it by `key`,
    ascending, or descending with `descending=True`. It selects one model
    (`select(User)`), and the page holds its objects; or columns, the key's among them
    (`select(User.id, User.email, User.created_at)`), and the page holds rows, which cost
    far less to load than objects where nothing is changed. `session` is the request's,
    or another `Reader`.
    """
    if after is not None and len(after) != len(key):
        raise TypeError(f"after= needs {len(key)} value(s), one per key column.")
    # One row more than the page tells whether another page follows, without a count.
    parameters: dict[str, Any] = {_LIMIT.key: limit + 1}
    if after is not None:
        parameters.update((_after(n), value) for n, value in enumerate(after))
    statement = _page_statement(query, key, descending=descending, after=after is not None)
    result = await session.execute(statement, parameters)
    rows = (result.scalars() if _selects_one_entity(query) else result).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], tuple(getattr(last, column.key) for column in key)


# The page statements' limit and cursor values are parameters, bound at execution.
_LIMIT = bindparam("keyset_limit", type_=Integer)
# Each query's page statements, one per key, direction and whether a cursor is given.
# A statement built once keeps its compiled form's cache key and the soft-delete filter's
# copy of it (app/db/_listeners.py); one built per page has both worked out again.
_page_statements: WeakKeyDictionary[
    Select[*tuple[Any, ...]], dict[tuple[Any, ...], Select[*tuple[Any, ...]]]
] = WeakKeyDictionary()


def _page_statement(
    query: Select[*tuple[Any, ...]],
    key: Sequence[KeyColumn],
    *,
    descending: bool,
    after: bool,
) -> Select[*tuple[Any, ...]]:
    """`query` ordered by `key`, limited, and past a cursor when `after` is set."""
    built = _page_statements.setdefault(query, {})
    signature = (*key, descending, after)
    statement = built.get(signature)
    if statement is None:
        statement = query
        if after:
            values: list[BindParameter[Any]] = [bindparam(_after(n)) for n in range(len(key))]
            statement = statement.where(_beyond(key, values, descending=descending))
        order = [column.desc() if descending else column.asc() for column in key]
        statement = built[signature] = statement.order_by(*order).limit(_LIMIT)
    return statement


def _after(n: int) -> str:
    return f"keyset_after_{n}"


def _selects_one_entity(query: Select[Any]) -> bool:
    """Whether `query`'s rows are one model's objects (then the page holds those)."""
    known = _one_entity.get(query)
    if known is None:
        # column_descriptions works its answer out from the selected columns each time.
        (selected, *others) = query.column_descriptions
        known = not others and selected["type"] is selected["entity"] is not None
        _one_entity[query] = known
    return known


# Whether each query selects one model, for as long as the query lives.
_one_entity: WeakKeyDictionary[Select[Any], bool] = WeakKeyDictionary()


def _beyond(
    key: Sequence[KeyColumn],
    values: Sequence[BindParameter[Any]],
    *,
    descending: bool,
) -> ColumnElement[bool]:
    """Rows after `values` in the order of `key`: `a >= x AND (a > x OR b > y)`.

    Spelled with comparisons on the leading column rather than a row comparison,
    `(a, b) > (x, y)`, because every backend turns `a >= x` into an index range, while
    MySQL does not always do so for a row comparison; the rest filters the few rows that
    share `x`.
    """
    column, value = key[0], values[0]
    past: ColumnElement[bool] = column < value if descending else column > value
    if len(key) == 1:
        return past
    edge = column <= value if descending else column >= value
    return and_(edge, or_(past, _beyond(key[1:], values[1:], descending=descending)))


async def count_rows(session: Reader, query: Select[Any], *, at_most: int) -> int:
    """How many rows `query` matches, counting no further than `at_most` + 1.

    A result of `at_most` + 1 means "more than `at_most`": the count stops there, so
    it costs at most that many rows read, however large the table.
    """
    bounded = query.order_by(None).limit(at_most + 1).subquery()
    result = await session.execute(select(func.count()).select_from(bounded))
    counted: int | None = result.scalar()
    return counted or 0


async def estimate_rows(session: Reader, table: FromClause) -> int | None:
    """The database's own estimate of how many rows `table` holds, read in one cheap
    query; None where it keeps none.

    PostgreSQL: the planner's `pg_class.reltuples`, refreshed by ANALYZE and autovacuum
    (None until the table was first analysed). MySQL and MariaDB: InnoDB's
    `information_schema.TABLES.TABLE_ROWS`, which can be off by a third or more. SQLite
    keeps no estimate. Both estimates count every row, soft-deleted ones included.
    """
    if not isinstance(table, Table):
        raise TypeError(f"estimate_rows() takes a table, such as User.__table__, not {table!r}.")
    name = table.name
    dialect = session.get_bind(clause=table).dialect.name
    if dialect == "postgresql":
        query = text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)")
    elif dialect in ("mysql", "mariadb"):
        query = text(
            "SELECT table_rows FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = :name"
        )
    else:
        return None
    estimate = (await session.execute(query, {"name": name})).scalar()
    # PostgreSQL 14 and later say -1 for a table that was never analysed.
    if estimate is None or estimate < 0:
        return None
    return int(estimate)


async def fetch_page(
    session: AsyncSession, query: Select[Any], *, limit: int, offset: int
) -> tuple[Sequence[Any], int]:
    """`limit` rows of `query` (which must be ordered) from `offset` on, and how many rows
    the whole query matches.

    Both parts read every row they pass over: the offset the rows before the page, the
    count the whole result. Bound `offset`, and prefer `fetch_keyset_page()` for lists
    that grow.
    """
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
