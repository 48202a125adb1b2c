"""The /stats dashboard: independent counts, run concurrently on separate connections.

One AsyncSession must never be used by two tasks at once, so the counts cannot share
the request's session. `db(multi_sessions=True)` gives each task of `db.gather()` a
session of its own, and `max_concurrent` caps how many connections this one request
may hold, so that a busy dashboard cannot drain the pool other requests need.

A deleted user's notes leave every count, as they leave the lists.
"""

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import ColumnExpressionArgument, Select, func, select

from app.api.deps import SettingsDep
from app.db import INCLUDE_DELETED, db, utc_now
from app.models.note import Note
from app.models.user import User
from app.schemas.stats import Stats
from app.web.error_body import error_responses

__all__ = ["router"]

router = APIRouter(prefix="/stats", tags=["stats"], responses=error_responses(503))


@router.get("")
async def read_stats(settings: SettingsDep) -> Stats:
    day_ago = utc_now() - timedelta(days=1)
    async with db(multi_sessions=True, max_concurrent=settings.database_max_concurrent_queries):
        users, notes, deleted_notes, recent_notes = await db.gather(
            _count(select(func.count()).select_from(User)),
            _count(_notes_of_live_users()),
            # The session hides deleted rows of every model unless told not to; told, the
            # statement keeps the authors' rule itself.
            _count(
                _notes_of_live_users(Note.is_deleted, ~User.is_deleted).execution_options(
                    **INCLUDE_DELETED
                )
            ),
            _count(_notes_of_live_users(Note.created_at >= day_ago)),
        )
    return Stats(users=users, notes=notes, deleted_notes=deleted_notes, notes_last_24h=recent_notes)


def _notes_of_live_users(*criteria: ColumnExpressionArgument[bool]) -> Select[Any]:
    # Joined to the author, whom the session hides once deleted, with their notes.
    return select(func.count()).select_from(Note).join(Note.author).where(*criteria)


async def _count(statement: Select[Any]) -> int:
    # Inside db.gather(), `db.session` is the session of the task running this coroutine.
    count: int = (await db.session.execute(statement)).scalar_one()
    return count
