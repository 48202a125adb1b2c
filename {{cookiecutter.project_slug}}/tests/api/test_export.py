"""The streaming export: every live note, as NDJSON or CSV, and no leak on disconnect."""

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.requests import ClientDisconnect
from starlette.types import Message

from app.api.routes.export import BATCH_SIZE
from app.models.note import Note
from app.models.user import User
from tests.asgi import http_scope
from tests.conftest import serve
from tests.factories import make_note, make_user
from tests.pools import queue_pool


async def test_ndjson_has_one_line_per_live_note_in_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    first = await make_note(session, author, title="first", body='with "quotes"\nand a newline')
    await make_note(session, author, title="deleted", deleted_days_ago=1)
    last = await make_note(session, author, title="last")

    response = await client.get("/export/notes")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [row["id"] for row in rows] == [first.id, last.id]
    assert rows[0]["body"] == 'with "quotes"\nand a newline'
    assert rows[0]["user_id"] == str(author.id)
    assert rows[0]["created_at"] == first.created_at.isoformat()


async def test_csv_has_a_header_and_quotes_what_needs_it(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    note = await make_note(session, await make_user(session), title="a, b", body="x")

    response = await client.get("/export/notes", params={"format": "csv"})

    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["id", "user_id", "title", "body", "created_at", "updated_at"]
    assert rows[1][:4] == [str(note.id), str(note.user_id), "a, b", "x"]


async def test_an_unknown_format_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/export/notes", params={"format": "xml"})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "query.format"


@pytest.fixture
async def committed_notes(engines: dict[str, AsyncEngine]) -> AsyncIterator[int]:
    """More notes than fit in one batch, committed for real, and removed afterwards."""
    count = BATCH_SIZE * 3
    user_id = uuid.uuid4()
    async with engines["main"].begin() as connection:
        await connection.execute(
            insert(User).values(id=user_id, email=f"{user_id}@example.com", username=str(user_id))
        )
        await connection.execute(
            insert(Note), [{"user_id": user_id, "title": f"n{i}"} for i in range(count)]
        )
    yield count
    async with engines["main"].begin() as connection:
        await connection.execute(delete(Note).where(Note.user_id == user_id))
        await connection.execute(delete(User).where(User.id == user_id))


async def test_a_live_app_streams_every_committed_note(
    make_live_app: Callable[..., FastAPI], committed_notes: int
) -> None:
    async with serve(make_live_app()) as client, client.stream("GET", "/export/notes") as response:
        lines = [line async for line in response.aiter_lines()]

    assert len(lines) == committed_notes


@pytest.mark.parametrize("how", ["disconnect message", "send fails"])
async def test_a_client_disconnect_mid_export_returns_the_connection(
    make_live_app: Callable[..., FastAPI], committed_notes: int, how: str
) -> None:
    app = make_live_app()
    engine: AsyncEngine = app.state.engines["main"]
    async with serve(app):
        requested, gone = asyncio.Event(), asyncio.Event()
        chunks: list[bytes] = []

        async def receive() -> Message:
            if not requested.is_set():
                requested.set()
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                chunks.append(message["body"])
                assert queue_pool(engine).checkedout() == 1  # the export's own session
                if how == "send fails":
                    raise OSError("the client closed the connection")
                gone.set()
                await asyncio.sleep(0)  # let the response notice the disconnect

        # ASGI 2.4 servers report a disconnect by failing send(), and Starlette raises
        # ClientDisconnect for the server; older servers send a message instead.
        if how == "send fails":
            with pytest.raises(ClientDisconnect):
                await app(http_scope("/export/notes", spec_version="2.4"), receive, send)
        else:
            await app(http_scope("/export/notes"), receive, send)

        assert 1 <= len(chunks) < committed_notes // BATCH_SIZE
        assert queue_pool(engine).checkedout() == 0
