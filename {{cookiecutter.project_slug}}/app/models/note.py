"""The example API's notes, each written by one user; soft-deleted."""

import uuid

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, SoftDeleteMixin, TimestampMixin
from app.models.user import User

__all__ = ["Note"]


class Note(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "notes"
    # One user's notes in id order (GET /notes?user_id=); it also serves the foreign key.
    __table_args__ = (Index("ix_notes_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")

    author: Mapped[User] = relationship(back_populates="notes")

    def __repr__(self) -> str:
        return f"Note(id={self.id!r}, title={self.title!r})"
