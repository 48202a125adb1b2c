"""The bodies of the /users endpoints."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.models.user import canonical
from app.schemas.partial import PartialUpdate
from app.schemas.text import Storable, stored_length

__all__ = ["UserCreate", "UserRead", "UserUpdate"]

# Deliberately loose: the only real check of an address is mail reaching it.
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_USERNAME = r"^[A-Za-z0-9_.-]+$"

# As long as the columns in app/models/user.py, counted as they store them: lower-cased.
Email = Annotated[
    str,
    Field(max_length=320, pattern=_EMAIL, examples=["ada@example.com"]),
    Storable,
    stored_length(320, canonical),
]
Username = Annotated[
    str,
    Field(min_length=2, max_length=64, pattern=_USERNAME, examples=["ada"]),
    Storable,
    stored_length(64, canonical),
]
FullName = Annotated[str, Field(max_length=200, examples=["Ada Lovelace"]), Storable]


class UserCreate(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    email: Email
    username: Username
    full_name: FullName = ""


class UserUpdate(PartialUpdate):
    email: Email | None = None
    username: Username | None = None
    full_name: FullName | None = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    full_name: str
    created_at: datetime
    updated_at: datetime
