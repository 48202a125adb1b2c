"""The /users resource, written with the `db.session` proxy.

The same operations on notes (routes/notes.py) take the session as a `SessionDep`
argument instead; both styles get the same request session, so pick one per module.
The middleware commits when the response is a success and rolls back otherwise, so no
route here commits by hand.
"""

import uuid
from typing import NoReturn

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.api.deps import PageDep
from app.db import db
from app.db.standalone import StandaloneReader
from app.models.note import Note
from app.models.user import User
from app.schemas.pages import Cursor, Page, read_page
from app.schemas.users import UserCreate, UserRead, UserUpdate
from app.web.error_body import error_responses
from app.web.errors import ConflictError, NotFoundError, is_unique_violation

__all__ = ["router"]

# Each route needs a database connection, so each can find the pool full.
router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(503))

WELCOME_TITLE = "Welcome!"
WELCOME_BODY = "Glad to have you here."

# Users are listed by creation time, the id breaking ties; the index
# ix_users_created_at_id holds the live users in that order (app/models/user.py).
LIST_KEY = (User.created_at, User.id)
LIST_CURSOR = Cursor(Cursor.datetime, Cursor.uuid)
# The list is a hot read, written as the fast path (see routes/profiles.py): a page selects
# the columns a listed user shows, which load as rows, a fraction of what objects cost,
# and reads them standalone, with no transaction. No session sees the statement, so it
# says which users are live itself, with the models' own rule.
_LISTED = select(*(getattr(User, name) for name in UserRead.model_fields)).where(~User.is_deleted)


@router.post("", status_code=201, responses=error_responses(409))
async def create_user(body: UserCreate) -> UserRead:
    """Create a user with a welcome note; 409 when the e-mail address or username is taken."""
    user = User(**body.model_dump())
    # In the request's transaction, which the middleware commits: the user and the note
    # commit together or not at all, before the 201 goes out. A background task after
    # the response could fail with nobody to tell: the client would have its 201 and the
    # note would be lost.
    user.notes.append(Note(title=WELCOME_TITLE, body=WELCOME_BODY))
    db.session.add(user)
    await _flush_or_conflict()
    return UserRead.model_validate(user)


@router.get("")
async def list_users(page: PageDep) -> Page[UserRead]:
    """Users by creation time, oldest first, a page at a time; `?count=` adds a total."""
    return await read_page(
        StandaloneReader(db),
        _LISTED,
        page,
        read_as=UserRead,
        key=LIST_KEY,
        cursor=LIST_CURSOR,
        estimate_from=User.__table__,
    )


@router.get("/{user_id}", responses=error_responses(404))
async def read_user(user_id: uuid.UUID) -> UserRead:
    return UserRead.model_validate(await _get_user(user_id))


@router.patch("/{user_id}", responses=error_responses(404, 409))
async def update_user(user_id: uuid.UUID, body: UserUpdate) -> UserRead:
    """Change only the fields present in the body."""
    user = await _get_user(user_id)
    for field, value in body.changes().items():
        setattr(user, field, value)
    await _flush_or_conflict()
    return UserRead.model_validate(user)


@router.delete("/{user_id}", status_code=204, responses=error_responses(404))
async def delete_user(user_id: uuid.UUID) -> Response:
    """Soft-delete: the row stays, but every ordinary query hides it from now on."""
    user = await _get_user(user_id)
    user.soft_delete()
    return Response(status_code=204)


async def _get_user(user_id: uuid.UUID) -> User:
    user = await User.get_by_pk(db.session, user_id)
    if user is None:
        raise NotFoundError(f"There is no user with id {user_id}.")
    return user


def _conflict_or_raise(exc: IntegrityError) -> NoReturn:
    if is_unique_violation(exc):
        raise ConflictError("That e-mail address or username is already taken.") from None
    raise exc


async def _flush_or_conflict() -> None:
    # Flushing here, rather than at the commit, turns a duplicate into a 409 while the
    # route can still answer; a failed commit could only answer 500.
    try:
        await db.session.flush()
    except IntegrityError as exc:
        _conflict_or_raise(exc)
