"""The bodies of the /users endpoints."""

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.partial import PartialUpdate

__all__ = ["UserCreate", "UserRead", "UserUpdate"]

# Deliberately loose: the only real check of an address is mail reaching it.
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_USERNAME = r"^[A-Za-z0-9_.-]+$"


class UserCreate(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    email: str = Field(max_length=320, pattern=_EMAIL, examples=["ada@example.com"])
    username: str = Field(min_length=2, max_length=64, pattern=_USERNAME, examples=["ada"])
    full_name: str = Field(default="", max_length=200, examples=["Ada Lovelace"])


class UserUpdate(PartialUpdate):
    email: str | None = Field(default=None, max_length=320, pattern=_EMAIL)
    username: str | None = Field(default=None, min_length=2, max_length=64, pattern=_USERNAME)
    full_name: str | None = Field(default=None, max_length=200)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    full_name: str
    created_at: datetime
    updated_at: datetime
