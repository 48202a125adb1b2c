"""create job_runs

Revision ID: 9c3f1a7e5b20
Revises: 4e8b2c6a9d17
Create Date: 2026-12-01 13:10:00

The interval each periodic job last ran for, so that a job runs once per interval
across every worker process and every machine (app/jobs/purge.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision: str = "9c3f1a7e5b20"
down_revision: str | Sequence[str] | None = "4e8b2c6a9d17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("interval_start", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_runs")),
    )


def downgrade() -> None:
    op.drop_table("job_runs")
