"""Health checks for load balancers and orchestrators."""

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up and serving; touches no database."""
    return {"status": "ok"}
