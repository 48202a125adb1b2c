"""The bodies of the audited /admin endpoints."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["AuditEntryRead"]


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    subject_id: str
    request_id: str | None
    details: dict[str, Any]
    created_at: datetime
