"""Writing an entry to the audit log, in the audit database's request session."""

from typing import Any

from app.audit.database import audit_db
from app.models.audit_entry import AuditEntry
from app.observability.logs import current_request_id

__all__ = ["record"]


def record(action: str, subject_id: object, **details: Any) -> AuditEntry:
    """Add an entry to the audit session; it is committed with the request's audit session.

    `action` reads "<resource>.<verb>", for example "user.deleted".
    """
    entry = AuditEntry(
        action=action,
        subject_id=str(subject_id),
        request_id=current_request_id(),
        details=details,
    )
    audit_db.session.add(entry)
    return entry
