"""The streaming export: every live note, as NDJSON or CSV, and no connection held meanwhile."""

import asyncio
import contextlib
import csv
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.requests import ClientDisconnect
from starlette.types import Message

from app.api.routes import export
from app.api.routes.export import BATCH_SIZE
from app.models.note import Note
from app.models.user import User
from app.web.errors import RETRY_AFTER_SECONDS
from tests.asgi import http_scope
from tests.conftest import serve
from tests.factories import make_note, make_user
from tests.pools import COUNTS_THE_APPS_POOL, queue_pool


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
    assert datetime.fromisoformat(rows[0]["created_at"]) == first.created_at


async def test_csv_has_a_header_and_quotes_what_needs_it(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    note = await make_note(session, await make_user(session), title="a, b", body="x")

    response = await client.get("/export/notes", params={"format": "csv"})

    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["id", "user_id", "title", "body", "created_at", "updated_at"]
    assert rows[1][:4] == [str(note.id), str(note.user_id), "a, b", "x"]


@pytest.mark.parametrize("how", ["skipped by id", "joined"])
async def test_the_notes_of_a_deleted_user_are_left_out(
    client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "joined":  # more deleted users than the export keeps in memory
        monkeypatch.setattr(export, "MAX_DELETED_AUTHORS", 0)
    kept = await make_note(session, await make_user(session))
    gone = await make_user(session)
    await make_note(session, gone)
    gone.soft_delete()
    await session.commit()

    response = await client.get("/export/notes")

    assert [json.loads(line)["id"] for line in response.text.splitlines()] == [kept.id]


async def test_an_ndjson_line_holds_the_notes_fields_escaped_as_json(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # U+2028, U+2029 and U+0085 are line ends to str.splitlines(): they must be escaped.
    body = "\u2028 \u2029 \x85 ☃\x01"
    note = await make_note(session, await make_user(session), title='"é\\\t', body=body)

    lines = (await client.get("/export/notes")).text.splitlines()

    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row == {
        "id": note.id,
        "user_id": str(note.user_id),
        "title": note.title,
        "body": note.body,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    # ISO 8601 in UTC, exact to the microsecond (test_the_lines_are_the_same_bytes_... below).
    assert datetime.fromisoformat(row["created_at"]) == note.created_at
    assert datetime.fromisoformat(row["updated_at"]) == note.updated_at


async def test_a_csv_row_reads_back_as_the_notes_fields(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    note = await make_note(session, await make_user(session), title='say "hi", twice', body="a\nb")

    response = await client.get("/export/notes", params={"format": "csv"})

    _, row = csv.reader(io.StringIO(response.text))
    assert row[:4] == [str(note.id), str(note.user_id), note.title, note.body]
    assert [datetime.fromisoformat(value) for value in row[4:]] == [
        note.created_at,
        note.updated_at,
    ]


def _spelled(note: Note) -> list[Any]:
    """A note's fields as the export spells them, worked out here from the standard library:
    timestamps as PostgreSQL's to_json() writes them, in UTC, the fraction of a second
    without trailing zeros."""
    stamps = [
        at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
        for at in (note.created_at, note.updated_at)
    ]
    stamps = [stamp.rstrip("0").rstrip(".") + "+00:00" for stamp in stamps]
    return [note.id, str(note.user_id), note.title, note.body, *stamps]


def _ndjson_line(note: Note) -> str:
    line = json.dumps(dict(zip(export.FIELDS, _spelled(note), strict=True)), ensure_ascii=False)
    for raw, escaped in (("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\x85", "\\u0085")):
        line = line.replace(raw, escaped)
    return line + "\n"


def _csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
    return buffer.getvalue()


async def test_the_lines_are_the_same_bytes_on_every_backend(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # PostgreSQL writes them itself, the app writes them elsewhere; the bytes are one.
    author = await make_user(session)
    on_the_second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # no fraction of a second
    tenths = datetime(2026, 1, 2, 5, 4, 5, 100000, tzinfo=timezone(timedelta(hours=2)))
    notes = [
        await make_note(session, author, title='"é\\\t<x>', body="\u2028 \u2029 \x85 ☃\x01\r\n, ;"),
        await make_note(
            session, author, title="x", body="", created_at=on_the_second, updated_at=tenths
        ),
    ]

    ndjson = await client.get("/export/notes")
    csv_export = await client.get("/export/notes", params={"format": "csv"})

    assert ndjson.content == "".join(_ndjson_line(note) for note in notes).encode()
    expected_csv = _csv([export.FIELDS, *(_spelled(note) for note in notes)])
    assert csv_export.content == expected_csv.encode()
    assert '"2026-01-02T03:04:05+00:00","2026-01-02T03:04:05.1+00:00"' in csv_export.text


async def test_an_unknown_format_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/export/notes", params={"format": "xml"})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "query.format"


@pytest.fixture
async def committed_notes(engines: dict[str, AsyncEngine]) -> AsyncIterator[int]:
    """Two full batches and one more note, committed for real, and removed afterwards."""
    count = BATCH_SIZE * 2 + 1
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


def _request_then(gone: asyncio.Event) -> Callable[[], Awaitable[Message]]:
    """An ASGI `receive`: the request without a body, then a disconnect once `gone` is set."""
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
@pytest.mark.parametrize("export_format", ["ndjson", "csv"])
async def test_a_slow_reader_gets_every_note_in_order_and_no_connection_waits_on_it(
    make_live_app: Callable[..., FastAPI], committed_notes: int, export_format: str
) -> None:
    app = make_live_app()
    engine: AsyncEngine = app.state.engines["main"]
    chunks: list[bytes] = []
    checked_out_while_sending: list[int] = []
    completed = asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        checked_out_while_sending.append(queue_pool(engine).checkedout())
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            completed.set()
        await asyncio.sleep(0.05)  # a client that reads slowly

    scope = {**http_scope("/export/notes"), "query_string": f"format={export_format}".encode()}
    async with serve(app):
        await app(scope, _request_then(completed), send)

        assert queue_pool(engine).checkedout() == 0
    assert completed.is_set()
    assert set(checked_out_while_sending) == {0}
    text = b"".join(chunks).decode()
    if export_format == "csv":
        header, *rows = list(csv.reader(io.StringIO(text)))
        assert header[0] == "id"
        ids = [int(row[0]) for row in rows]
    else:
        ids = [json.loads(line)["id"] for line in text.splitlines()]
    assert len(ids) == committed_notes
    assert ids == sorted(set(ids))  # complete and in order across the batch boundaries
    assert max(chunk.count(b"\n") for chunk in chunks) <= BATCH_SIZE  # one batch in memory


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
async def test_a_stalled_reader_holds_no_connection_and_its_stream_ends(
    make_live_app: Callable[..., FastAPI], committed_notes: int
) -> None:
    send_timeout = 0.2
    app = make_live_app(export_send_timeout=send_timeout)
    engine: AsyncEngine = app.state.engines["main"]
    bodies: list[Message] = []
    stalled = asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        bodies.append(message)
        if len(bodies) == 2:
            # The client took the first chunk and stopped reading: a server's send()
            # now blocks until the client's socket has room again, which is never.
            stalled.set()
            await asyncio.Event().wait()

    async with serve(app):
        export = asyncio.create_task(
            app(http_scope("/export/notes"), _request_then(asyncio.Event()), send)
        )
        await stalled.wait()
        since = time.monotonic()
        assert queue_pool(engine).checkedout() == 0
        async with asyncio.timeout(send_timeout + 5):
            await export
        held_for = time.monotonic() - since

        assert queue_pool(engine).checkedout() == 0
    assert held_for < send_timeout + 1
    # No final message: the server closes the connection, so the client sees the body
    # cut short instead of an export that looks complete.
    assert all(message.get("more_body") for message in bodies)


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
@pytest.mark.parametrize("how", ["disconnect message", "send fails"])
async def test_a_client_disconnect_mid_export_returns_the_connection(
    make_live_app: Callable[..., FastAPI], committed_notes: int, how: str
) -> None:
    app = make_live_app()
    engine: AsyncEngine = app.state.engines["main"]
    async with serve(app):
        gone = asyncio.Event()
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                chunks.append(message["body"])
                assert queue_pool(engine).checkedout() == 0  # none while the client reads
                if how == "send fails":
                    raise OSError("the client closed the connection")
                gone.set()
                await asyncio.sleep(0)  # let the response notice the disconnect

        # ASGI 2.4 servers report a disconnect by failing send(); older servers send a
        # message instead. Whether ClientDisconnect reaches the server is app.web.errors'
        # business; here, the export must stop and give its connection back.
        scope = http_scope("/export/notes", spec_version="2.4" if how == "send fails" else "2.3")
        with contextlib.suppress(ClientDisconnect):
            await app(scope, _request_then(gone), send)

        assert 1 <= len(chunks) < committed_notes // BATCH_SIZE
        assert queue_pool(engine).checkedout() == 0


@pytest.mark.direct_connection(COUNTS_THE_APPS_POOL)
async def test_a_full_pool_is_a_503_before_the_response_starts(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(database_pool_size=1, database_max_overflow=0, database_pool_timeout=0.1)
    engine: AsyncEngine = app.state.engines["main"]
    async with serve(app) as client, engine.connect():  # holds the only connection
        response = await client.get("/export/notes")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["error"]["code"] == "database_busy"


async def test_a_database_that_is_down_is_a_503_before_the_response_starts(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app()
    engine: AsyncEngine = app.state.engines["main"]

    def refuse(*_: Any) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    async with serve(app) as client:
        await engine.dispose()  # no pooled connection left: the export must connect
        event.listen(engine.sync_engine, "do_connect", refuse)
        try:
            response = await client.get("/export/notes")
        finally:
            event.remove(engine.sync_engine, "do_connect", refuse)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["error"]["code"] == "database_unavailable"
