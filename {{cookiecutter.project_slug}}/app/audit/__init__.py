"""The audit log: a second, independent database with a session proxy of its own.

`audit_db` works like `db`, on the audit database: `audit_db.session` in a request,
`async with audit_db():` outside one. `AuditMiddleware` binds it; app/main.py adds it
next to the main database's middleware.
"""

from .database import AuditMiddleware, AuditSessionDep, audit_db
from .log import record

__all__ = ["AuditMiddleware", "AuditSessionDep", "audit_db", "record"]
