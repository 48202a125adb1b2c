"""The audit log's entries: who did what to which record, written to the audit database."""

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import CreatedAtMixin
from app.models.audit_base import AuditBase

__all__ = ["AuditEntry"]


class AuditEntry(CreatedAtMixin, AuditBase):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    # What happened, as "<resource>.<verb>", for example "user.created".
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def __repr__(self) -> str:
        return f"AuditEntry(id={self.id!r}, action={self.action!r})"
