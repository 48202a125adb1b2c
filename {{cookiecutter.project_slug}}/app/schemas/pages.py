"""Pagination: the query parameters every list takes, and the page it returns."""

from collections.abc import Iterable
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

__all__ = ["MAX_OFFSET", "MAX_PAGE_SIZE", "Page", "PageParams", "page_of"]

T = TypeVar("T")
ReadT = TypeVar("ReadT", bound=BaseModel)

# A bound on every page, so that no single request can read a whole table into memory;
# the streaming export is the way to get everything.
MAX_PAGE_SIZE = 100
# A bound on how far a page may start: the database reads and discards every row
# before the offset, so a deep page costs as much as reading all of them. The export
# reads everything; keyset pagination will replace offsets.
MAX_OFFSET = 10_000


class PageParams(BaseModel):
    """`?limit=&offset=`: which slice of the ordered results to return."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class Page(BaseModel, Generic[T]):
    """One page of results, with the total count for building pagination controls."""

    items: list[T]
    total: int
    limit: int
    offset: int


def page_of(
    read_as: type[ReadT], rows: Iterable[object], total: int, params: PageParams
) -> Page[ReadT]:
    """The page that `fetch_page()` read for `params`, each row read as `read_as`."""
    return Page(
        items=[read_as.model_validate(row) for row in rows],
        total=total,
        limit=params.limit,
        offset=params.offset,
    )
