"""Typed dependencies for route signatures: the request's session, settings, paging and
the SECRET_KEY guard of administrative routes."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.db import SessionDep
from app.schemas.pages import PageParams
from app.settings import Settings

__all__ = ["INTEGER_MAX", "IntegerId", "PageDep", "SessionDep", "SettingsDep", "require_admin"]

# The largest value of an `Integer` column on PostgreSQL and MySQL (32-bit signed).
INTEGER_MAX = 2**31 - 1


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with (tests build apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PageDep = Annotated[PageParams, Query()]
# A path segment naming a row by an `Integer` primary key; anything the column cannot
# hold is a 422 instead of a query that the database refuses.
IntegerId = Annotated[int, Path(ge=1, le=INTEGER_MAX)]


# auto_error=False: a missing or malformed header gets the service's own 401 below,
# with the same error body as every other error.
_bearer = HTTPBearer(
    scheme_name="SecretKey",
    description="The service's SECRET_KEY: `Authorization: Bearer <SECRET_KEY>`.",
    auto_error=False,
)


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with `Authorization: Bearer <SECRET_KEY>`; else 401.

    Add it to a router or route with `dependencies=[Depends(require_admin)]`.
    """
    expected = settings.secret_key.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    # compare_digest takes as long whatever prefix matches, so timing gives nothing
    # away; an empty SECRET_KEY matches nothing.
    if not (expected and hmac.compare_digest(given, expected)):
        raise HTTPException(
            status_code=401,
            detail="Send the service's SECRET_KEY as `Authorization: Bearer <SECRET_KEY>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
