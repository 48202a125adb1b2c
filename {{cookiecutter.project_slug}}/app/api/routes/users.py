"""The /users resource, written with the `db.session` proxy.

The same operations on notes (routes/notes.py) take the session as a `SessionDep`
argument instead; both styles get the same request session, so pick one per module.
The middleware commits when the response is a success and rolls back otherwise, so no
route here commits by hand.
"""

import uuid
from typing import Any, NoReturn, cast

from fastapi import APIRouter, Response
from sqlalchemy import bindparam, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.deps import PageDep
from app.api.responses import json_response
from app.db import INCLUDE_DELETED, db, normalized
from app.errors import ConflictError, NotFoundError, is_unique_violation
from app.models.note import Note
from app.models.user import User
from app.schemas.errors import error_responses
from app.schemas.pages import Cursor, Page, read_page
from app.schemas.users import UserCreate, UserRead, UserUpdate

__all__ = ["router"]

# Each route needs a database connection, so each can find the pool full.
router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(503))

WELCOME_TITLE = "Welcome!"
WELCOME_BODY = "Glad to have you here."

# A new user is a hot write, written as the fast path for writes: Core INSERTs in the
# request's transaction, where the ORM would work out the order of the two rows, their
# relationship and the note's key for a flush that costs more than the rest of the
# request. They take the values the ORM would: the columns' defaults (the id, the
# timestamps), and the model's normalisers through `normalized()`. Changes to users go
# through the ORM below, whose listeners keep `updated_at` and the normalisers for them.
# The note is stamped with the user's creation time.
_users = User.__table__.c
_INSERT_USER = insert(User)
_INSERT_WELCOME_NOTE = insert(Note).values(
    title=WELCOME_TITLE,
    body=WELCOME_BODY,
    created_at=bindparam("user_created_at"),
    updated_at=bindparam("user_created_at"),
)
# PostgreSQL takes both rows in one statement, a round trip fewer: a data-modifying CTE
# inserts the user, and the note's INSERT reads the new row's id from it.
_new_user = (
    insert(User)
    .values({name: bindparam(name) for name in UserCreate.model_fields})
    .returning(*(_users[name] for name in UserRead.model_fields))
    .cte("new_user")
)
_INSERT_USER_WITH_WELCOME_NOTE = select(_new_user).add_cte(
    insert(Note)
    .from_select(
        ["user_id", "title", "body", "created_at", "updated_at"],
        select(
            _new_user.c.id,
            literal(WELCOME_TITLE),
            literal(WELCOME_BODY),
            _new_user.c.created_at,
            _new_user.c.created_at,
        ),
        include_defaults=False,
    )
    .cte("welcome_note")
)

# Users are listed by creation time, the id breaking ties; the index
# ix_users_created_at_id holds the live users in that order (app/models/user.py).
LIST_KEY = (_users.created_at, _users.id)
LIST_CURSOR = Cursor(Cursor.datetime, Cursor.uuid)
# The list is a hot read, written as the fast path (see routes/profiles.py): a Core
# statement on the columns a listed user shows. A page changes nothing, and a row costs
# a fraction of an ORM object to load. It writes the live filter itself and tells the
# layer's soft-delete listener to leave it alone. Given `db` rather than `db.session`,
# the page reads it standalone: no transaction, so no BEGIN and no COMMIT.
_LISTED = (
    select(*(_users[name] for name in UserRead.model_fields))
    .where(_users.deleted_at.is_(None))
    .execution_options(**INCLUDE_DELETED)
)


@router.post("", status_code=201, response_model=UserRead, responses=error_responses(409))
async def create_user(body: UserCreate) -> Response:
    """Create a user with a welcome note; 409 when the e-mail address or username is taken."""
    # The connection the session writes users through, in the request's transaction,
    # which the middleware commits: the user and the note commit together or not at all,
    # before the 201 goes out. A background task after the response could fail with
    # nobody to tell: the client would have its 201 and the note would be lost.
    connection = await db.session.connection(bind_arguments={"mapper": User})
    try:
        user = await _insert_with_welcome_note(connection, normalized(User, body.model_dump()))
    except IntegrityError as exc:
        _conflict_or_raise(exc)
    return json_response(UserRead.model_validate(user), status_code=201)


async def _insert_with_welcome_note(
    connection: AsyncConnection, values: dict[str, Any]
) -> dict[str, Any]:
    """Insert the user of `values` and its welcome note; the user's row as written."""
    if connection.dialect.name == "postgresql":
        inserted = await connection.execute(_INSERT_USER_WITH_WELCOME_NOTE, values)
        return dict(inserted.mappings().one())
    # SQLite and MySQL have no INSERT in a CTE: two statements. The first one's
    # parameters are the row as written, the columns' defaults (id, timestamps) among
    # them: one row, so one mapping.
    inserted = await connection.execute(_INSERT_USER, values)
    user = cast(dict[str, Any], inserted.last_inserted_params())
    note = {"user_id": user["id"], "user_created_at": user["created_at"]}
    await connection.execute(_INSERT_WELCOME_NOTE, note)
    return user


@router.get("", response_model=Page[UserRead])
async def list_users(page: PageDep) -> Response:
    """Users by creation time, oldest first, a page at a time; `?count=` adds a total."""
    users = await read_page(
        db,
        _LISTED,
        page,
        read_as=UserRead,
        key=LIST_KEY,
        cursor=LIST_CURSOR,
        estimate_from=User.__table__,
    )
    return json_response(users)


@router.get("/{user_id}", response_model=UserRead, responses=error_responses(404))
async def read_user(user_id: uuid.UUID) -> Response:
    return json_response(UserRead.model_validate(await _get_user(user_id)))


@router.patch("/{user_id}", response_model=UserRead, responses=error_responses(404, 409))
async def update_user(user_id: uuid.UUID, body: UserUpdate) -> Response:
    """Change only the fields present in the body."""
    user = await _get_user(user_id)
    for field, value in body.changes().items():
        setattr(user, field, value)
    await _flush_or_conflict()
    return json_response(UserRead.model_validate(user))


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
