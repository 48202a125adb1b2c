"""GET /profiles/{user_id}: the read of one user, written as the fast path for hot reads.

It answers exactly what `GET /users/{user_id}` answers (the same `UserRead`, 404 for a
missing or deleted user) with less work per request:

- one statement on the columns the response shows, built once at import: SQLAlchemy
  caches its compiled form, and no ORM object is loaded (no identity map, no entity);
- `standalone_read()` runs it on a connection of its own, outside the request's
  session: in autocommit where the engine allows it, so on PostgreSQL no BEGIN and no
  COMMIT go to the server, and the connection is back in the pool before the response
  is built.

No session sees the statement, so it says itself which users are live, with the
models' own rule (`~User.is_deleted`). Use it for reads that are hot and simple; keep
the session for anything that writes, or reads what the request wrote.
"""

import uuid

from fastapi import APIRouter
from sqlalchemy import bindparam, select

from app.db import db
from app.db.standalone import standalone_read
from app.models.user import User
from app.schemas.users import UserRead
from app.web.error_body import error_responses
from app.web.errors import NotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/profiles", tags=["users"], responses=error_responses(503))

_READ_PROFILE = select(*(getattr(User, name) for name in UserRead.model_fields)).where(
    User.id == bindparam("user_id"), ~User.is_deleted
)


@router.get("/{user_id}", responses=error_responses(404))
async def read_profile(user_id: uuid.UUID) -> UserRead:
    """The user, as `GET /users/{user_id}` returns it, read through the fast path."""
    result = await standalone_read(db, _READ_PROFILE, {"user_id": user_id})
    row = result.mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"There is no user with id {user_id}.")
    return UserRead.model_validate(row)
