"""The base class of the audit database's models, with a MetaData of its own."""

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import NAMING_CONVENTION, Base

__all__ = ["AuditBase"]


class AuditBase(Base):
    """Models of the audit database; its migrations live under migrations/audit_versions."""

    __abstract__ = True
    # A separate MetaData keeps the audit tables out of the main database's
    # migrations, and the main tables out of the audit database's.
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    @classmethod
    def current_session(cls) -> AsyncSession:
        # The query helpers would otherwise fall back to the main database's db.session.
        raise TypeError(
            f"{cls.__name__} lives in the audit database; pass the audit session to the "
            f"helper explicitly, e.g. {cls.__name__}.get_one(audit_session, ...)."
        )
