"""Pagination by keyset: the query parameters every list takes, its cursor, and the page.

A page is `?limit=` rows after the row a cursor names, in the order of an index, so the
database reads `limit` rows whatever page it is: the millionth page costs what the first
does. An offset would make it read and discard every row before the page. The cursor is
opaque to clients: the sort key of a page's last row, as urlsafe base64 of a JSON list.
One that does not decode to the key of this list is a 422; one that decodes is just a
position, since every row it could name is a row the client may list anyway.

Counting is the expensive part of a page and most clients never show a total, so a page
carries one only when asked: `?count=exact` counts, but stops at `MAX_EXACT_COUNT`;
`?count=estimate` takes the database's own estimate where it keeps one (`estimate_rows()`
of app/db) and is exact for small results.
"""

import base64
import binascii
import functools
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy import FromClause, Row, Select

from app.db import KeyColumn, Reader, count_rows, estimate_rows, fetch_keyset_page

__all__ = [
    "MAX_CURSOR_LENGTH",
    "MAX_EXACT_COUNT",
    "MAX_PAGE_SIZE",
    "Count",
    "Cursor",
    "Page",
    "PageParams",
    "TotalKind",
    "read_page",
]

T = TypeVar("T")
ReadT = TypeVar("ReadT", bound=BaseModel)

# A bound on every page, so that no single request can read a whole table into memory;
# the streaming export is the way to get everything.
MAX_PAGE_SIZE = 100
# `?count=exact` counts at most this many rows: counting reads every row it counts.
MAX_EXACT_COUNT = 10_000
# Longer than any cursor this service gives out (a timestamp and a UUID take 88).
MAX_CURSOR_LENGTH = 200
# The largest value of an `Integer` column on PostgreSQL and MySQL (32-bit signed).
_INTEGER_MAX = 2**31 - 1


class Count(StrEnum):
    exact = "exact"
    estimate = "estimate"


class TotalKind(StrEnum):
    exact = "exact"
    # More rows match than `?count=exact` counts; `total` is MAX_EXACT_COUNT + 1.
    at_least = "at_least"
    estimate = "estimate"


class PageParams(BaseModel):
    """`?limit=&cursor=&count=`: how many rows, after which row, and whether to count."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(
        default=None,
        max_length=MAX_CURSOR_LENGTH,
        description="The `next_cursor` of the previous page; leave it out for the first.",
    )
    count: Count | None = Field(
        default=None,
        description="Add a `total`: `exact` counts up to 10,000 rows, `estimate` asks the "
        "database for its estimate.",
    )


class Page(BaseModel, Generic[T]):
    """One page of results; `next_cursor` fetches the next, and is null on the last page."""

    items: list[T]
    limit: int
    next_cursor: str | None
    # Only with `?count=`: how many rows the whole list has, and how `total` was reached.
    total: int | None = None
    total_kind: TotalKind | None = None


class Cursor:
    """The cursor of one list: encodes a row's sort key, and decodes it with checks.

    Each part is a function that turns the JSON value back into the key's value, or
    raises ValueError; `Cursor.datetime`, `Cursor.uuid` and `Cursor.integer` cover the
    usual keys: `Cursor(Cursor.datetime, Cursor.uuid)` for `(created_at, id)`.
    """

    def __init__(self, *parts: Callable[[Any], Any]) -> None:
        self.parts = parts

    def encode(self, key: Sequence[object]) -> str:
        values = [value if isinstance(value, int) else str(value) for value in key]
        text = json.dumps(values, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(text).rstrip(b"=").decode()

    def decode(self, cursor: str | None) -> tuple[Any, ...] | None:
        """The key that `cursor` names; None for no cursor; a 422 for a cursor that
        this list did not give out."""
        if cursor is None:
            return None
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            values = json.loads(text)
            if not isinstance(values, list) or len(values) != len(self.parts):
                raise ValueError("not a key of this list")
            return tuple(part(value) for part, value in zip(self.parts, values, strict=True))
        except (ValueError, TypeError, binascii.Error, OverflowError, RecursionError):
            raise RequestValidationError(
                [
                    {
                        "type": "cursor",
                        "loc": ("query", "cursor"),
                        "msg": "is not a cursor of this list: pass the `next_cursor` of the "
                        "previous page unchanged, or leave it out for the first page",
                        "input": cursor,
                    }
                ]
            ) from None

    @staticmethod
    def datetime(value: Any) -> datetime:
        if not isinstance(value, str):
            raise TypeError("a timestamp is a string")
        parsed = datetime.fromisoformat(value)
        if parsed.utcoffset() is None:
            raise ValueError("a timestamp has its offset")
        return parsed.astimezone(UTC)  # OverflowError at the ends of the calendar

    @staticmethod
    def uuid(value: Any) -> uuid.UUID:
        if not isinstance(value, str):
            raise TypeError("a UUID is a string")
        return uuid.UUID(value)

    @staticmethod
    def integer(value: Any) -> int:
        # An id the column cannot hold would be an error from the database, not a 422.
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("an id is an integer")
        if not 0 <= value <= _INTEGER_MAX:
            raise ValueError("an id the column cannot hold")
        return value


@functools.cache
def _list_of(model: type[ReadT]) -> TypeAdapter[list[ReadT]]:
    # One validation for the page's rows, rather than one call per row.
    return TypeAdapter(list[model])  # type: ignore[valid-type]


async def read_page(
    session: Reader,
    query: Select[Any],
    params: PageParams,
    *,
    read_as: type[ReadT],
    key: Sequence[KeyColumn],
    cursor: Cursor,
    descending: bool = False,
    estimate_from: FromClause | None = None,
) -> Page[ReadT]:
    """The page of `query` that `params` ask for, ordered by `key`, each row as `read_as`.

    `cursor` encodes `key`; `estimate_from` is the table whose size estimates the total
    of an unfiltered list (leave it out where the query filters: an estimate of the
    table would not be one of the result). `session` is the request's session, or a
    `StandaloneReader` for a list that reads what is committed, each statement on a
    connection of its own (`app/db/standalone.py`).
    """
    after = cursor.decode(params.cursor)  # a 422 before any query runs
    rows, last = await fetch_keyset_page(
        session, query, key=key, limit=params.limit, after=after, descending=descending
    )
    total, total_kind = await _total(session, query, params.count, estimate_from)
    return Page(
        items=_list_of(read_as).validate_python(_validatable(rows), from_attributes=True),
        limit=params.limit,
        next_cursor=None if last is None else cursor.encode(last),
        total=total,
        total_kind=total_kind,
    )


def _validatable(rows: Sequence[Any]) -> Sequence[Any]:
    """Rows as dicts, which pydantic validates faster than it reads their attributes;
    model objects as they are."""
    if rows and isinstance(rows[0], Row):
        fields = rows[0]._fields
        return [dict(zip(fields, row, strict=True)) for row in rows]
    return rows


async def _total(
    session: Reader, query: Select[Any], count: Count | None, table: FromClause | None
) -> tuple[int | None, TotalKind | None]:
    if count is None:
        return None, None
    if count is Count.estimate and table is not None:
        estimate = await estimate_rows(session, table)
        # Below the bound an exact count is cheap, and better than a guess.
        if estimate is not None and estimate > MAX_EXACT_COUNT:
            return estimate, TotalKind.estimate
    counted = await count_rows(session, query, at_most=MAX_EXACT_COUNT)
    if counted > MAX_EXACT_COUNT:
        return counted, TotalKind.at_least
    return counted, TotalKind.exact
