"""`app.api.routing.APIRouter`: a request outside a router's prefix skips its routes."""

from typing import Any

import fastapi
import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Match

from app.api.routing import APIRouter


def _app(*routers: fastapi.APIRouter, prefix: str = "") -> FastAPI:
    app = FastAPI()
    for router in routers:
        app.include_router(router, prefix=prefix)
    return app


def _router(prefix: str) -> APIRouter:
    router = APIRouter(prefix=prefix)

    @router.get("/{item}")
    async def read(item: str) -> dict[str, str]:
        return {"router": prefix, "item": item}

    return router


@pytest.fixture
def searched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes of the routers whose routes FastAPI tried, in order."""
    tried: list[str] = []
    search = fastapi.APIRouter.matches

    def spy(self: fastapi.APIRouter, scope: Any) -> tuple[Match, Any]:
        tried.append(self.prefix)
        return search(self, scope)

    monkeypatch.setattr(fastapi.APIRouter, "matches", spy)
    return tried


async def test_only_the_router_whose_prefix_the_path_holds_is_searched(
    searched: list[str],
) -> None:
    app = _app(_router("/first"), _router("/second"), _router("/third"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/third/x")

    assert response.json() == {"router": "/third", "item": "x"}
    assert searched == ["/third"]


async def test_a_router_included_under_another_prefix_still_matches() -> None:
    app = _app(_router("/items"), prefix="/v1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        found = await client.get("/v1/items/x")
        missing = await client.get("/items/x")

    assert found.json() == {"router": "/items", "item": "x"}
    assert missing.status_code == 404


async def test_a_prefix_with_a_path_parameter_is_searched_as_fastapi_would() -> None:
    app = _app(_router("/orgs/{org}"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/orgs/acme/x")

    assert response.json() == {"router": "/orgs/{org}", "item": "x"}
