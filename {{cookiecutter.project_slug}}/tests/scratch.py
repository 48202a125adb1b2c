"""Models that exist only for these tests.

They sit on a MetaData of their own, so they run in every bake variant (with or
without the example API) and never leak into the migrations or `alembic check`.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.db import NAMING_CONVENTION, NORMALIZE, Base, SoftDeleteMixin, TimestampMixin


class ScratchBase(Base):
    __abstract__ = True
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Member(TimestampMixin, SoftDeleteMixin, ScratchBase):
    __tablename__ = "scratch_members"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    handle: Mapped[str] = mapped_column(
        String(64), unique=True, info={NORMALIZE: lambda value: value.strip().lower()}
    )
    team: Mapped[str] = mapped_column(String(32), default="")
    score: Mapped[int] = mapped_column(default=0)
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_seen: Mapped[datetime | None] = mapped_column(default=None)

    posts: Mapped[list["Post"]] = relationship(back_populates="member", order_by="Post.id")


class Post(TimestampMixin, SoftDeleteMixin, ScratchBase):
    __tablename__ = "scratch_posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("scratch_members.id"))
    title: Mapped[str] = mapped_column(String(100))

    member: Mapped[Member] = relationship(back_populates="posts")


class ForeignBase(DeclarativeBase):
    """A declarative base of the user's own, not the layer's `Base`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Label(TimestampMixin, SoftDeleteMixin, ForeignBase):
    """The mixins on a model that does not derive from `Base` still do their work."""

    __tablename__ = "scratch_labels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


METADATAS = (ScratchBase.metadata, ForeignBase.metadata)
