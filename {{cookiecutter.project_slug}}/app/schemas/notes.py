"""The bodies of the /notes endpoints."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.partial import PartialUpdate
from app.schemas.text import Storable

__all__ = ["NoteCreate", "NoteRead", "NoteUpdate"]

# The title's column holds 200 characters; the body's is unbounded TEXT (64 KiB on
# MySQL, which 10,000 characters of four UTF-8 bytes each still fit).
Title = Annotated[str, Field(min_length=1, max_length=200, examples=["Groceries"]), Storable]
Body = Annotated[str, Field(max_length=10_000, examples=["Eggs, flour, milk."]), Storable]


class NoteCreate(BaseModel):
    user_id: uuid.UUID
    title: Title
    body: Body = ""


class NoteUpdate(PartialUpdate):
    title: Title | None = None
    body: Body | None = None


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: uuid.UUID
    title: str
    body: str
    created_at: datetime
    updated_at: datetime
