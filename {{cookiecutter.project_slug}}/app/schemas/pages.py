"""Pagination: the query parameters every list takes, and the page it returns."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["MAX_PAGE_SIZE", "Page", "PageParams", "paginate"]

T = TypeVar("T")
ReadT = TypeVar("ReadT", bound=BaseModel)

# A bound on every page, so that no single request can read a whole table into memory;
# the streaming export is the way to get everything.
MAX_PAGE_SIZE = 100


class PageParams(BaseModel):
    """`?limit=&offset=`: which slice of the ordered results to return."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0)


class Page(BaseModel, Generic[T]):
    """One page of results, with the total count for building pagination controls."""

    items: list[T]
    total: int
    limit: int
    offset: int


async def paginate(
    session: AsyncSession, query: Select[Any], params: PageParams, read_as: type[ReadT]
) -> Page[ReadT]:
    """One page of `query`, which must be ordered, each row read as `read_as`, with the
    total number of rows the query matches."""
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    total = await session.scalar(counted)
    rows = await session.scalars(query.limit(params.limit).offset(params.offset))
    return Page(
        items=[read_as.model_validate(row) for row in rows],
        total=total or 0,
        limit=params.limit,
        offset=params.offset,
    )
