"""Column types that behave the same on PostgreSQL, MySQL/MariaDB and SQLite."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["PortableJSON", "UTCDateTime", "UtcNow"]

# JSONB on PostgreSQL (indexable, compact); the generic JSON type elsewhere.
PortableJSON = JSON().with_variant(postgresql.JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC, that comes back aware on every backend.

    PostgreSQL keeps the offset itself (`timestamptz`). SQLite and MySQL have no
    timezone-aware type, so the value is stored as naive UTC and UTC is attached again
    on the way out. Naive datetimes are refused instead of guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            # MySQL's DATETIME drops microseconds unless asked to keep them.
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{value!r} is a naive datetime; pass a timezone-aware one, "
                "such as datetime.now(UTC)."
            )
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # asyncpg returns every timestamptz aware and in UTC already: the column's own
        # type processes it alone, without a call below for each timestamp of each row.
        if dialect.driver == "asyncpg":
            return self.load_dialect_impl(dialect).result_processor(dialect, coltype)
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class UtcNow(FunctionElement[datetime]):
    """The current UTC time as a server-side default, spelled for each backend."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(UtcNow)
def _utcnow_default(element: UtcNow, compiler: SQLCompiler, **kw: Any) -> str:
    # CURRENT_TIMESTAMP is UTC on SQLite and timezone-aware on PostgreSQL.
    return "CURRENT_TIMESTAMP"


@compiles(UtcNow, "mysql")
@compiles(UtcNow, "mariadb")
def _utcnow_mysql(element: UtcNow, compiler: SQLCompiler, **kw: Any) -> str:
    # MySQL's CURRENT_TIMESTAMP follows the session time zone; UTC_TIMESTAMP does not.
    # The parentheses make it an expression default, which MySQL 8 requires.
    return "(UTC_TIMESTAMP(6))"
