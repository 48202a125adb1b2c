"""The model, schemas and engine settings that every benchmark contestant shares."""

import json
import os
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "DATABASE_URL",
    "ENGINE_ARGS",
    "LIST_SIZE",
    "SESSION_ARGS",
    "Item",
    "ItemIn",
    "ItemOut",
    "list_items",
    "ndjson_lines",
]

# The runner sets this; a contestant started by hand needs it too.
DATABASE_URL = os.environ["BENCH_DATABASE_URL"]

# One pool of ten connections that never grows, so twenty wrk connections queue
# for it and the tail latency shows how each contestant behaves under queueing.
# The baked service gets the same through its settings (harness/contestants.py).
ENGINE_ARGS: dict[str, Any] = {"pool_size": 10, "max_overflow": 0}

# SQLAlchemy's asyncio docs recommend this; every contestant uses it so that no
# one pays for a refresh after commit that the others skip.
SESSION_ARGS: dict[str, Any] = {"expire_on_commit": False}

LIST_SIZE = 50


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


def ndjson_lines(rows: Any) -> str:
    """Render `(id, name, value)` rows as NDJSON, one object per line."""
    return "".join(
        json.dumps({"id": row.id, "name": row.name, "value": row.value}) + "\n" for row in rows
    )
