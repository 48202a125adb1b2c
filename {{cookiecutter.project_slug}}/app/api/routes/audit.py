"""Audited administration: one request that writes to both databases.

Deleting a user through /admin changes the main database and records the deletion
in the audit database. Each database has its own middleware, session and commit;
there is no transaction spanning both. The audit middleware sits inside the main
one, so at the end of a successful request the audit entry commits first and the
main change second:

- both commits succeed: 204, the user is deleted and the deletion is on record;
- the audit commit fails: nothing is committed anywhere and the client gets 500;
- the main commit fails after the audit commit: the client gets 500, the user is
  still there, and the audit log holds an entry for a deletion that did not happen.

That last case errs on the side an audit log wants: no change without a record. An
entry whose subject still exists marks an attempt that failed. See README.md,
"Two databases", for the reasoning and tests/api/test_audit.py for each case.

Every route here answers 401 unless the request carries `Authorization: Bearer
<SECRET_KEY>` (`require_admin` in app/api/deps.py).
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

from app.api.deps import PageDep, SessionDep, require_admin
from app.audit import AuditSessionDep, record
from app.models.audit_entry import AuditEntry
from app.models.user import User
from app.schemas.audit import AuditEntryRead
from app.schemas.pages import Cursor, Page, read_page
from app.schemas.text import Storable
from app.web.error_body import ErrorBody, error_responses
from app.web.errors import NotFoundError

__all__ = ["router"]

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No SECRET_KEY, or a wrong one (`unauthorized`)."}
}
# Each route needs a database connection, so each can find the pool full.
router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=_UNAUTHORIZED | error_responses(503),
)


@router.delete("/users/{user_id}", status_code=204, responses=error_responses(404))
async def delete_user_on_record(
    user_id: uuid.UUID,
    session: SessionDep,
    reason: Annotated[str, Query(max_length=500), Storable] = "unspecified",
) -> Response:
    """Soft-delete a user and record who asked for it (by request id) and why."""
    user = await User.get_by_pk(session, user_id)
    if user is None:
        raise NotFoundError(f"There is no user with id {user_id}.")
    user.soft_delete()
    record("user.deleted", user.id, username=user.username, reason=reason)
    return Response(status_code=204)


@router.get("/audit-log")
async def read_audit_log(audit_session: AuditSessionDep, page: PageDep) -> Page[AuditEntryRead]:
    """Audit entries, newest first, read from the audit database."""
    return await read_page(
        audit_session,
        select(AuditEntry),
        page,
        read_as=AuditEntryRead,
        key=(AuditEntry.id,),
        cursor=Cursor(Cursor.integer),
        descending=True,
        estimate_from=AuditEntry.__table__,
    )
