"""GET /profiles/{user_id}: the read of one user, written as the fast path for hot reads.

It answers exactly what `GET /users/{user_id}` answers (the same `UserRead`, 404 for a
missing or deleted user) with less work per request:

- one Core statement, built once at import: SQLAlchemy caches its compiled form, and no
  ORM loading runs (no identity map, no entity objects); it writes `deleted_at IS NULL`
  itself and tells the layer's soft-delete listener to leave it alone;
- `db.read()` runs it standalone: one statement needs no transaction, so on PostgreSQL
  no BEGIN and no COMMIT go to the server, and the connection is back in the pool
  before the response is built;
- the row goes straight into the response model, validated once, and the model's own
  serializer writes the body: FastAPI neither validates it again nor encodes it itself.

Use it for reads that are hot and simple; keep the ORM for changes to existing rows
(`POST /users` in routes/users.py is the fast path for a hot insert).
"""

import uuid

from fastapi import APIRouter, Response
from sqlalchemy import bindparam, select

from app.api.responses import json_response
from app.db import INCLUDE_DELETED, db
from app.errors import NotFoundError
from app.models.user import User
from app.schemas.errors import error_responses
from app.schemas.users import UserRead

__all__ = ["router"]

router = APIRouter(prefix="/profiles", tags=["users"], responses=error_responses(503))

_users = User.__table__.c
_READ_PROFILE = (
    select(*(_users[name] for name in UserRead.model_fields))
    .where(_users.id == bindparam("user_id"), _users.deleted_at.is_(None))
    .execution_options(**INCLUDE_DELETED)
)


@router.get("/{user_id}", response_model=UserRead, responses=error_responses(404))
async def read_profile(user_id: uuid.UUID) -> Response:
    """The user, as `GET /users/{user_id}` returns it, read through the fast path."""
    result = await db.read(_READ_PROFILE, {"user_id": user_id})
    row = result.mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"There is no user with id {user_id}.")
    return json_response(UserRead.model_validate(dict(row)))
