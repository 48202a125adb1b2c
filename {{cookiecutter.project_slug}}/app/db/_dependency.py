"""FastAPI dependencies that hand out the request's session, the same one as `db.session`."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from ._proxy import SessionProxy, db

__all__ = ["SessionDep", "get_session", "session_dependency"]


def session_dependency(proxy: SessionProxy) -> Callable[[], Coroutine[Any, Any, AsyncSession]]:
    """A dependency returning `proxy.session`, e.g. for a second database's proxy."""

    # A plain return, not `yield`: the middleware commits and closes the session
    # before the response starts, while FastAPI runs the code after a `yield` only
    # once the response (and its background tasks) has been sent.
    async def get_session() -> AsyncSession:
        return proxy.session

    get_session.__doc__ = f"The request's session from {proxy!r}; the middleware ends it."
    return get_session


get_session = session_dependency(db)
SessionDep = Annotated[AsyncSession, Depends(get_session)]
