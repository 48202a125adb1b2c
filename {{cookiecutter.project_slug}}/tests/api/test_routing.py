"""`app.api.routing.include_routers()`: a request tries only its router's routes."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from app.api.routing import include_routers


def _router(prefix: str) -> APIRouter:
    router = APIRouter(prefix=prefix)

    @router.get("/{item}", name=f"read{prefix}")
    async def read(item: str) -> dict[str, str]:
        return {"router": prefix, "item": item}

    return router


def _app(*routers: APIRouter) -> FastAPI:
    app = FastAPI()
    include_routers(app, routers)
    return app


@asynccontextmanager
async def _client(app: FastAPI, root_path: str = "") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def tried(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the routes that a request was matched against, in order."""
    paths: list[str] = []
    match = APIRoute.matches

    def spy(self: APIRoute, scope: Any) -> tuple[Match, Any]:
        paths.append(self.path)
        return match(self, scope)

    monkeypatch.setattr(APIRoute, "matches", spy)
    return paths


async def test_only_the_routes_of_the_router_whose_prefix_the_path_holds_are_tried(
    tried: list[str],
) -> None:
    app = _app(_router("/first"), _router("/second"), _router("/third"))
    async with _client(app) as client:
        response = await client.get("/third/x")

    assert response.json() == {"router": "/third", "item": "x"}
    assert tried == ["/third/{item}"]


async def test_the_app_s_dependency_overrides_reach_the_routes() -> None:
    def greeting() -> str:
        return "hello"

    router = APIRouter(prefix="/greet")

    @router.get("")
    async def greet(text: Annotated[str, Depends(greeting)]) -> str:
        return text

    overridden, plain = _app(router), _app(router)
    overridden.dependency_overrides[greeting] = lambda: "overridden"
    async with _client(overridden) as client:
        assert (await client.get("/greet")).json() == "overridden"
    # The routes are the app's own copies: another app including the router is unaffected.
    async with _client(plain) as client:
        assert (await client.get("/greet")).json() == "hello"


async def test_a_wrong_method_a_missing_path_and_a_trailing_slash_are_fastapi_s_answers() -> None:
    app = _app(_router("/items"))
    async with _client(app) as client:
        wrong_method = await client.post("/items/x")
        missing = await client.get("/items/x/y")
        slash = await client.get("/items/x/", follow_redirects=False)

    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "GET")
    assert missing.status_code == 404
    assert (slash.status_code, slash.headers["location"]) == (307, "http://test/items/x")


async def test_an_app_served_under_a_root_path_still_finds_its_routes(tried: list[str]) -> None:
    app = _app(_router("/first"), _router("/second"))
    async with _client(app, root_path="/api") as client:
        response = await client.get("/api/second/x")

    assert response.json() == {"router": "/second", "item": "x"}
    assert tried == ["/second/{item}"]


async def test_a_router_without_a_fixed_prefix_is_included_as_fastapi_includes_it() -> None:
    plain = APIRouter()

    @plain.get("/ping")
    async def ping() -> str:
        return "pong"

    app = _app(_router("/orgs/{org}"), plain)
    async with _client(app) as client:
        org = await client.get("/orgs/acme/x")
        pong = await client.get("/ping")

    assert org.json() == {"router": "/orgs/{org}", "item": "x"}
    assert pong.json() == "pong"


def test_each_route_is_listed_once_for_the_schema_and_for_url_building() -> None:
    app = _app(_router("/first"), _router("/second"))

    paths = app.openapi()["paths"]
    assert sorted(paths) == ["/first/{item}", "/second/{item}"]
    assert [route.path for route in app.routes if isinstance(route, APIRoute)] == [
        "/first/{item}",
        "/second/{item}",
    ]
    assert app.url_path_for("read/second", item="x") == "/second/x"
