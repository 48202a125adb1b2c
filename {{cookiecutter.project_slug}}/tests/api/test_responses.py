"""`app.api.responses.json_response()`: the model's JSON, written by its own serializer."""

from datetime import UTC, datetime

import httpx
from fastapi import FastAPI, Response
from pydantic import BaseModel

from app.api.responses import json_response


class Event(BaseModel):
    name: str
    at: datetime


async def test_the_body_is_what_fastapi_would_send_for_the_declared_model() -> None:
    app = FastAPI()
    event = Event(name="launch", at=datetime(2026, 12, 7, 6, 0, tzinfo=UTC))

    @app.get("/once", response_model=Event, status_code=201)
    async def once() -> Response:
        return json_response(event, status_code=201)

    @app.get("/twice", status_code=201)
    async def twice() -> Event:
        return event

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        once_response, twice_response = await client.get("/once"), await client.get("/twice")

    assert once_response.status_code == twice_response.status_code == 201
    assert once_response.headers["content-type"] == "application/json"
    assert (
        once_response.json()
        == twice_response.json()
        == {
            "name": "launch",
            "at": "2026-12-07T06:00:00Z",
        }
    )
    # The route's response_model still documents the body.
    schema = app.openapi()["paths"]["/once"]["get"]["responses"]["201"]["content"]
    assert schema == {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}}
