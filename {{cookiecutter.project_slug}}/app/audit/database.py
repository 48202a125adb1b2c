"""The audit database's middleware and session proxy, a pair of their own."""

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import create_middleware_and_session_proxy, session_dependency

__all__ = ["AuditMiddleware", "AuditSessionDep", "audit_db"]

# Sharing nothing with `db`: its own engine, sessions and commit, in every request.
AuditMiddleware, audit_db = create_middleware_and_session_proxy("audit_db")

AuditSessionDep = Annotated[AsyncSession, Depends(session_dependency(audit_db))]
