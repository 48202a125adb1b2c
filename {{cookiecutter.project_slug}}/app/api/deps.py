"""Typed dependencies for route signatures: the request's session, settings and paging."""

from typing import Annotated

from fastapi import Depends, Query, Request

from app.db import SessionDep
from app.schemas.pages import PageParams
from app.settings import Settings

__all__ = ["PageDep", "SessionDep", "SettingsDep"]


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with (tests build apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PageDep = Annotated[PageParams, Query()]
