"""Health checks for load balancers and orchestrators."""

import asyncio
import logging

import sqlalchemy.exc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.deps import SettingsDep
from app.db import has_free_connection

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up and serving; touches no database."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "a database is down or its pool is full"}})
async def ready(request: Request, settings: SettingsDep) -> JSONResponse:
    """Every database answers `SELECT 1` within the deadline; 503 names any that does not."""
    engines: dict[str, AsyncEngine] = request.app.state.engines
    names = list(engines)
    outcomes = await asyncio.gather(
        *(_ping(engines[name], settings.health_check_timeout) for name in names)
    )
    databases = dict(zip(names, outcomes, strict=True))
    healthy = all(outcome == "ok" for outcome in outcomes)
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "databases": databases},
        status_code=200 if healthy else 503,
    )


async def _ping(engine: AsyncEngine, deadline: float) -> str:
    """ "ok", or why the database cannot serve, in words fit for an operator."""
    try:
        async with asyncio.timeout(deadline):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except (TimeoutError, sqlalchemy.exc.TimeoutError):
        if not has_free_connection(engine.pool):
            return "pool exhausted: every connection is in use"
        return f"no answer within {deadline:g} s"
    except Exception as exc:
        logger.warning("readiness ping of %s failed", engine.url.database, exc_info=True)
        # The class name only: driver messages can carry the host, user or URL.
        return f"unreachable ({type(exc).__name__})"
    return "ok"
