"""The application factory: builds the FastAPI app and owns its lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import make_url

from app.api.routes import health
from app.settings import Settings, get_settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass their own `settings`, servers read the environment."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = make_url(settings.database_url).render_as_string(hide_password=True)
        logger.info("starting with database %s", database)
        yield
        logger.info("stopped")

    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        description="{{ cookiecutter.description }}",
        debug=settings.debug,
        lifespan=lifespan,
    )
    app.include_router(health.router)
    return app
