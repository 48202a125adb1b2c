"""The example API's users: normalised e-mail and username, unique among live users."""

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import NORMALIZE, Base, SoftDeleteMixin, TimestampMixin

if TYPE_CHECKING:
    from app.models.note import Note

__all__ = ["User"]


def canonical(value: str) -> str:
    """The form in which e-mails and usernames are stored and compared."""
    return value.strip().lower()


# Deleted rows are left out of the unique indexes, so a deleted user's e-mail and
# username can be registered again. MySQL and MariaDB have no partial indexes: there
# they are plain unique indexes, and the deleted row keeps its values (a 409).
_LIVE = text("deleted_at IS NULL")
_DELETED = text("deleted_at IS NOT NULL")


class User(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_email", "email", unique=True, postgresql_where=_LIVE, sqlite_where=_LIVE),
        Index(
            "ix_users_username", "username", unique=True, postgresql_where=_LIVE, sqlite_where=_LIVE
        ),
        # The order of GET /users, so that a page reads its own rows and no others.
        Index(
            "ix_users_created_at_id",
            "created_at",
            "id",
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
        # The few deleted users, whose notes the export leaves out.
        Index(
            "ix_users_deleted_at",
            "deleted_at",
            postgresql_where=_DELETED,
            sqlite_where=_DELETED,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # 320 characters is the longest address RFC 5321 allows.
    email: Mapped[str] = mapped_column(String(320), info={NORMALIZE: canonical})
    username: Mapped[str] = mapped_column(String(64), info={NORMALIZE: canonical})
    full_name: Mapped[str] = mapped_column(String(200), default="")
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Load explicitly under asyncio: selectinload(User.notes) in the query, or
    # `await user.awaitable_attrs.notes`; a plain attribute access cannot await.
    notes: Mapped[list["Note"]] = relationship(back_populates="author", order_by="Note.id")

    def __repr__(self) -> str:
        return f"User(id={self.id!s}, username={self.username!r})"
