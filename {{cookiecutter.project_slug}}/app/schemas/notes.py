"""The bodies of the /notes endpoints."""

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.partial import PartialUpdate

__all__ = ["NoteCreate", "NoteRead", "NoteUpdate"]

_MAX_BODY = 10_000


class NoteCreate(BaseModel):
    user_id: uuid.UUID
    title: str = Field(min_length=1, max_length=200, examples=["Groceries"])
    body: str = Field(default="", max_length=_MAX_BODY, examples=["Eggs, flour, milk."])


class NoteUpdate(PartialUpdate):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=_MAX_BODY)


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: uuid.UUID
    title: str
    body: str
    created_at: datetime
    updated_at: datetime
