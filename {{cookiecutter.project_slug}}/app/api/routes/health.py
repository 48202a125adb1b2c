"""Health checks for load balancers and orchestrators."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.readiness import READY, Readiness

__all__ = ["router"]

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up and serving; touches no database."""
    return {"status": "ok"}


_NOT_READY = "a database is unreachable, behind or ahead of the migrations, or its pool is full"


@router.get("/ready", responses={503: {"description": _NOT_READY}})
async def ready(request: Request) -> JSONResponse:
    """Every database answers, has a free connection and is at the code's head revision.

    503 names each database that is not, and why: `unreachable (...)`, `behind: ...`,
    `ahead: ...`, `no answer within ...`, `pool exhausted: ...`.
    """
    readiness: Readiness = request.app.state.readiness
    databases = await readiness.check()
    healthy = all(state == READY for state in databases.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "databases": databases},
        status_code=200 if healthy else 503,
    )
