"""The body of the /stats dashboard."""

from pydantic import BaseModel

__all__ = ["Stats"]


class Stats(BaseModel):
    users: int
    notes: int
    deleted_notes: int
    notes_last_24h: int
