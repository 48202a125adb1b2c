"""Health checks for load balancers and orchestrators."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.ops.readiness import READY, Readiness

__all__ = ["LIVENESS_PATH", "router"]

router = APIRouter(prefix="/health", tags=["health"])

# The session middlewares leave it out (app/main.py): it never needs a database session.
LIVENESS_PATH = f"{router.prefix}/live"


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up and serving; touches no database."""
    return {"status": "ok"}


_NOT_READY = (
    "a database is unreachable, behind or ahead of the migrations, or its pool is full; "
    "or the process is stopping"
)
# While a stopping process drains (app/ops/serve.py), it still serves but asks for no more.
_STOPPING = {"status": "stopping", "reason": "shutting down: finishing the requests in flight"}


@router.get("/ready", responses={503: {"description": _NOT_READY}})
async def ready(request: Request) -> JSONResponse:
    """Every database answers, has a free connection and is at the code's head revision.

    503 names each database that is not, and why: `unreachable (...)`, `behind: ...`,
    `ahead: ...`, `no answer within ...`, `pool exhausted: ...`. A process that got
    SIGTERM answers 503 `{"status": "stopping", ...}` at once, without asking any database.
    With DATABASE_REPLICA_URL set, `replica` reports the read replica ("ok", "down: ...",
    "lagging: ..."); it never makes the answer 503, since the primary serves its reads.
    """
    readiness: Readiness = request.app.state.readiness
    if readiness.draining:
        return JSONResponse(_STOPPING, status_code=503)
    databases = await readiness.check()
    healthy = all(state == READY for state in databases.values())
    body: dict[str, object] = {"status": "ok" if healthy else "unavailable", "databases": databases}
    replica = await readiness.check_replica()
    if replica is not None:
        body["replica"] = replica  # reported only: the primary serves reads meanwhile
    return JSONResponse(body, status_code=200 if healthy else 503)
