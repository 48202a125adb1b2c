"""A body over MAX_REQUEST_BODY_BYTES is a 413 in the error shape, before it is read in full."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from app.settings import Settings
from app.web.body_limit import BodyLimitMiddleware
from tests.asgi import http_scope

LIMIT = Settings.model_fields["max_request_body_bytes"].default
CHUNK = 64 * 1024


class Upload:
    """A request body sent in chunks, which counts how much of it the app has pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            chunk = b"x" * min(CHUNK, self.total - self.sent)
            self.sent += len(chunk)
            yield chunk


@pytest.fixture
def reached(app: FastAPI) -> list[int]:
    """Adds POST /probe/upload, which reads the body; the sizes it read, once per call."""
    sizes: list[int] = []

    @app.post("/probe/upload")
    async def upload(request: Request) -> dict[str, int]:
        sizes.append(len(await request.body()))
        return {"size": sizes[-1]}

    return sizes


def test_the_default_limit_is_one_mebibyte() -> None:
    assert LIMIT == 1024 * 1024


async def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(
    client: httpx.AsyncClient, reached: list[int]
) -> None:
    upload = Upload(256 * 1024 * 1024)
    headers = {"Content-Length": str(upload.total)}

    response = await client.post("/probe/upload", content=upload, headers=headers)

    assert response.status_code == 413
    assert response.json() == {
        "error": {
            "code": "content_too_large",
            "message": f"The request body is larger than {LIMIT} bytes, the most this service "
            "accepts; send a smaller one.",
            "request_id": response.headers["X-Request-ID"],
        }
    }
    assert response.headers["Connection"] == "close"
    assert upload.sent == 0
    assert reached == []


async def test_a_chunked_body_is_cut_off_at_the_first_chunk_past_the_limit(
    client: httpx.AsyncClient, reached: list[int]
) -> None:
    upload = Upload(256 * 1024 * 1024)  # no Content-Length: sent chunked

    response = await client.post("/probe/upload", content=upload)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "content_too_large"
    assert upload.sent <= LIMIT + CHUNK
    assert reached == []


async def test_a_body_of_exactly_the_limit_is_read(
    client: httpx.AsyncClient, reached: list[int]
) -> None:
    response = await client.post("/probe/upload", content=Upload(LIMIT))

    assert response.status_code == 200
    assert reached == [LIMIT]


async def test_a_route_with_a_json_body_gets_the_413_not_fastapis_400(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # FastAPI turns any failure while it reads a body into a 400; the limit must win.
    @app.post("/probe/json")
    async def probe(payload: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(payload)}

    big = Upload(2 * LIMIT)
    headers = {"Content-Type": "application/json"}

    response = await client.post("/probe/json", content=big, headers=headers)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "content_too_large"
    assert big.sent <= LIMIT + CHUNK


async def test_a_request_without_a_body_passes_through() -> None:
    seen: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await BodyLimitMiddleware(inner, max_body_bytes=1)(http_scope(), receive, send)

    assert seen == [{"type": "http.request", "body": b"", "more_body": False}]
    assert sent[0]["status"] == 204


async def test_an_http2_body_without_a_length_header_is_still_counted() -> None:
    # HTTP/1 has no body without Content-Length or chunks, so those requests skip the
    # count; HTTP/2 frames its bodies without either header.
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"xy", "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {**http_scope(), "http_version": "2", "method": "POST"}
    await BodyLimitMiddleware(inner, max_body_bytes=1)(scope, receive, send)

    assert sent[0]["status"] == 413


def test_a_limit_below_one_byte_is_refused() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None: ...

    with pytest.raises(ValueError, match="at least 1"):
        BodyLimitMiddleware(inner, max_body_bytes=0)
