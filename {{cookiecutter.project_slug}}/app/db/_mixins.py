"""Column mixins for models: creation and update timestamps, and soft deletion."""

from datetime import UTC, datetime

from sqlalchemy import ColumnElement
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from ._column_types import UTCDateTime, UtcNow

__all__ = ["INCLUDE_DELETED", "CreatedAtMixin", "SoftDeleteMixin", "TimestampMixin", "utc_now"]

# The execution option that lets soft-deleted rows through the layer's filter:
# select(Note).execution_options(**INCLUDE_DELETED).
INCLUDE_DELETED = {"include_deleted": True}


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _timestamp() -> Mapped[datetime]:
    # Known in Python, so that the ORM need not read it back (an expired attribute would
    # need an awaited refresh under asyncio): the layer's before_insert listener stamps
    # ORM inserts, the Python default covers Core inserts, and the server default rows
    # inserted with plain SQL.
    return mapped_column(UTCDateTime(), default=utc_now, server_default=UtcNow())


class CreatedAtMixin:
    """A `created_at` column: when the row was inserted, in UTC."""

    created_at: Mapped[datetime] = _timestamp()


class TimestampMixin:
    """`created_at` and `updated_at`; the layer moves `updated_at` on every change."""

    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()


class SoftDeleteMixin:
    """A `deleted_at` column; rows where it is set are hidden from ordinary queries.

    The layer's sessions do the hiding (a `do_orm_execute` listener). To see deleted
    rows too, run the statement with `execution_options(**INCLUDE_DELETED)`.

    `is_deleted` is the rule itself, written once: on a row it is a bool, in a query
    (`Model.is_deleted`) the SQL condition. The listener hides what it matches, and a
    statement that runs outside a session, where no listener sees it, writes
    `~Model.is_deleted` itself.
    """

    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    @hybrid_property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @is_deleted.inplace.expression
    @classmethod
    def _is_deleted_expression(cls) -> ColumnElement[bool]:
        return cls.deleted_at.is_not(None)

    def soft_delete(self) -> None:
        """Mark the row deleted; it is written at the next flush, like any change."""
        self.deleted_at = utc_now()

    def restore(self) -> None:
        """Bring a soft-deleted row back."""
        self.deleted_at = None
