"""The routers are included as FastAPI documents it, so what the app declares reaches them.

FastAPI's docs add global authentication with `FastAPI(dependencies=[...])`, and global
responses and operation ids with `responses=` and `generate_unique_id_function=`. A team
that adds them to `create_app()` must get them on every route, in the OpenAPI document
too. These tests build the app with them, as that team's `create_app()` would.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.routing import APIRoute

import app.main
from app.main import create_app
from app.settings import Settings
from tests.conftest import serve

TEAPOT: dict[int | str, dict[str, Any]] = {
    418: {"description": "The app's own response, declared once for every route."}
}


def guard() -> None:
    """A global authentication dependency that lets nobody in."""
    raise HTTPException(status_code=401, detail="guarded")


def operation_id(route: APIRoute) -> str:
    return f"svc-{route.name}"


class _GuardedFastAPI(FastAPI):
    """FastAPI with the settings a team adds to `create_app()`'s `FastAPI(...)` call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            dependencies=[Depends(guard)],
            responses=TEAPOT,
            generate_unique_id_function=operation_id,
            **kwargs,
        )


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> FastAPI:
    monkeypatch.setattr(app.main, "FastAPI", _GuardedFastAPI)
    return create_app(settings)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each operation of an OpenAPI document: its method, path and description."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


async def test_an_app_level_dependency_guards_every_route(guarded: FastAPI) -> None:
    document = guarded.openapi()
    answers: dict[str, int] = {}
    async with serve(guarded) as client:
        for method, path, _ in operations(document):
            # Any value will do: the guard answers before the parameters are validated.
            url = path.replace("{", "").replace("}", "")
            answers[f"{method} {path}"] = (await client.request(method, url)).status_code

    assert "GET /health/live" in answers
    assert set(answers.values()) == {401}, answers


async def test_the_apps_dependency_overrides_reach_every_route(guarded: FastAPI) -> None:
    guarded.dependency_overrides[guard] = lambda: None
    async with serve(guarded) as client:
        response = await client.get("/health/live")

    assert response.status_code == 200


def test_the_openapi_document_keeps_the_apps_responses_and_operation_ids(
    guarded: FastAPI,
) -> None:
    listed = list(operations(guarded.openapi()))

    assert listed
    for method, path, operation in listed:
        assert "418" in operation["responses"], f"{method} {path}"
        assert operation["operationId"].startswith("svc-"), f"{method} {path}"
