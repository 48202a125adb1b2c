"""The declarative base of every model: constraint naming, AsyncAttrs and the query helpers."""

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import MetaData, Uuid
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase

from ._column_types import PortableJSON, UTCDateTime
from ._queries import QueryMixin

__all__ = ["NAMING_CONVENTION", "Base"]

# Named constraints make migrations the same on every backend: without names,
# PostgreSQL, MySQL and SQLite each invent their own, and a later migration cannot
# drop or alter a constraint whose name it does not know.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(QueryMixin, AsyncAttrs, DeclarativeBase):
    """The base class of the main database's models.

    A model for another database subclasses it with `__abstract__ = True` and a
    `metadata = MetaData(naming_convention=NAMING_CONVENTION)` of its own.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Plain annotations pick portable types: `Mapped[datetime]` is always aware UTC,
    # `Mapped[uuid.UUID]` is native on PostgreSQL and CHAR(32) elsewhere.
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: PortableJSON,
    }
