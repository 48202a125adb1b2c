"""The example's periodic jobs: which interval each one last ran for, across every process."""

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime

__all__ = ["JobRun"]


class JobRun(Base):
    """One row per job; a process runs the job for an interval only if it moves `interval_start`.

    Every worker on every machine wakes up once per interval; in each interval of the
    wall clock, the first to move the row forward runs the job, and the others find the
    interval taken and skip it (app/jobs/purge.py).
    """

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    interval_start: Mapped[datetime] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"JobRun(name={self.name!r}, interval_start={self.interval_start!r})"
