"""The /notes resource, written with the `SessionDep` dependency.

Each route receives the request's session as an argument, which is the style
SQLAlchemy's own documentation prefers and the easiest to read in a test. It is the
very session `db.session` returns (see routes/users.py), committed by the middleware.

A deleted user's notes go with them: every query here joins the author, whom the
soft-delete filter hides once deleted, so those notes are neither listed nor found.
"""

import uuid

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import IntegerId, PageDep, SessionDep
from app.models.note import Note
from app.models.user import User
from app.schemas.notes import NoteCreate, NoteRead, NoteUpdate
from app.schemas.pages import Cursor, Page, read_page
from app.web.error_body import error_responses
from app.web.errors import NotFoundError

__all__ = ["router"]

# Each route needs a database connection, so each can find the pool full.
router = APIRouter(prefix="/notes", tags=["notes"], responses=error_responses(503))

# Notes are listed by id, which is their creation order: the primary key's index
# serves the whole list, ix_notes_user_id_id one user's notes.
LIST_CURSOR = Cursor(Cursor.integer)


@router.post("", status_code=201, responses=error_responses(404))
async def create_note(body: NoteCreate, session: SessionDep) -> NoteRead:
    """Create a note for an existing user; 404 when the user does not exist."""
    if await User.get_by_pk(session, body.user_id) is None:
        raise NotFoundError(f"There is no user with id {body.user_id}.")
    note = Note(**body.model_dump())
    session.add(note)
    await session.flush()  # assigns the id
    return NoteRead.model_validate(note)


@router.get("")
async def list_notes(
    session: SessionDep, page: PageDep, user_id: uuid.UUID | None = None
) -> Page[NoteRead]:
    """Notes in creation order, a page at a time; `?user_id=` keeps one user's notes,
    `?count=` adds a total."""
    query = select(Note).join(Note.author)
    if user_id is not None:
        query = query.where(Note.user_id == user_id)
    return await read_page(
        session,
        query,
        page,
        read_as=NoteRead,
        key=(Note.id,),
        cursor=LIST_CURSOR,
        # One user's notes are few, and the table's size says nothing about them.
        estimate_from=Note.__table__ if user_id is None else None,
    )


@router.get("/{note_id}", responses=error_responses(404))
async def read_note(note_id: IntegerId, session: SessionDep) -> NoteRead:
    return NoteRead.model_validate(await _get_note(session, note_id))


@router.patch("/{note_id}", responses=error_responses(404))
async def update_note(note_id: IntegerId, body: NoteUpdate, session: SessionDep) -> NoteRead:
    """Change only the fields present in the body."""
    note = await _get_note(session, note_id)
    for field, value in body.changes().items():
        setattr(note, field, value)
    await session.flush()  # moves updated_at, so the response shows the new value
    return NoteRead.model_validate(note)


@router.delete("/{note_id}", status_code=204, responses=error_responses(404))
async def delete_note(note_id: IntegerId, session: SessionDep) -> Response:
    """Soft-delete: hidden from now on, purged for good by the job in app/jobs/purge.py."""
    note = await _get_note(session, note_id)
    note.soft_delete()
    return Response(status_code=204)


async def _get_note(session: AsyncSession, note_id: int) -> Note:
    note = await session.scalar(select(Note).join(Note.author).where(Note.id == note_id))
    if note is None:
        raise NotFoundError(f"There is no note with id {note_id}.")
    return note
