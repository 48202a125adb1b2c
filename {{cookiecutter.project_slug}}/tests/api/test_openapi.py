"""/openapi.json documents the error body the service sends, not FastAPI's default."""

from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from app.web.error_body import ErrorBody, error_responses

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


class Payload(BaseModel):
    name: str


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def add_probe_routes(app: FastAPI) -> None:
    """A route with a parameter, one with a body, and one that declares its own errors."""

    @app.get("/probe/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.post("/probe/items")
    async def create_item(payload: Payload) -> Payload:
        return payload

    @app.delete("/probe/items/{item_id}", responses=error_responses(404, 409))
    async def delete_item(item_id: int) -> None: ...


async def test_fastapis_validation_error_schemas_are_gone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)

    text = (await client.get("/openapi.json")).text

    assert "HTTPValidationError" not in text
    assert '"ValidationError"' not in text


async def test_every_error_status_points_at_the_error_body(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)
    document = await openapi(client)

    errors = {
        (method, path, status): response
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400 and "content" in response
    }

    assert errors
    for key, response in errors.items():
        assert response["content"]["application/json"]["schema"] == ERROR_BODY, key


async def test_each_route_lists_the_statuses_its_input_can_cause(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)
    paths = (await openapi(client))["paths"]

    def statuses(path: str, method: str) -> list[str]:
        responses = paths[path][method]["responses"]
        return sorted(status for status in responses if int(status) >= 400)

    assert statuses("/probe/items/{item_id}", "get") == ["422"]
    assert statuses("/probe/items", "post") == ["400", "413", "422"]
    assert statuses("/probe/items/{item_id}", "delete") == ["404", "409", "422"]
    assert statuses("/health/live", "get") == []


async def test_the_documented_error_body_is_the_one_sent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)

    not_found = await client.get("/no/such/path")
    invalid = await client.get("/probe/items/not-a-number")

    for response in (not_found, invalid):
        ErrorBody.model_validate_json(response.text, strict=True)
    assert "details" not in not_found.json()["error"]
    assert invalid.json()["error"]["details"][0]["field"] == "path.item_id"
