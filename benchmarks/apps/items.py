"""The model, schemas and session settings that every benchmark contestant shares."""

import os
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from harness.config import DATABASE_URL_VARIABLE, LIST_SIZE

__all__ = [
    "DATABASE_URL",
    "SESSION_ARGS",
    "Item",
    "ItemIn",
    "ItemOut",
    "list_items",
]

# The runner sets this; a contestant started by hand needs it too.
DATABASE_URL = os.environ[DATABASE_URL_VARIABLE]

# SQLAlchemy's asyncio docs recommend this; every contestant uses it so that no
# one pays for a refresh after commit that the others skip.
SESSION_ARGS: dict[str, Any] = {"expire_on_commit": False}


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[int] = mapped_column(Integer)


class ItemIn(BaseModel):
    name: str
    value: int


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    value: int


list_items = select(Item).order_by(Item.id).limit(LIST_SIZE)
