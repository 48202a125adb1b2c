"""Streaming export: every note as NDJSON or CSV, in constant memory.

The request's session is closed before a streaming body starts, so the generator
opens a session of its own with `async with db():` and keeps it for every chunk.
`session.stream()` reads the rows through a server-side cursor in batches of
`BATCH_SIZE`, so memory stays flat however many rows there are.

Starlette's own StreamingResponse reacts to a disconnect by cancelling the task that
runs the generator, possibly in the middle of a fetch, which some drivers (aiomysql)
answer by breaking the connection; and it never closes the generator, which stays
suspended inside `async with db()`, holding its connection, until the garbage
collector finds it. `ClosingStreamingResponse` instead stops at the next batch once
the client is gone and closes the generator itself, so the session ends normally
and the connection goes straight back to the pool.
"""

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from app.db import db
from app.models.note import Note

__all__ = ["BATCH_SIZE", "ClosingStreamingResponse", "router"]

router = APIRouter(prefix="/export", tags=["export"])

BATCH_SIZE = 1000
COLUMNS = (Note.id, Note.user_id, Note.title, Note.body, Note.created_at, Note.updated_at)
FIELDS = [column.key for column in COLUMNS]


class ClosingStreamingResponse(StreamingResponse):
    """Streams until the body ends or the client leaves, then closes the body generator."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Done once the client has gone; checked between chunks, never cancelling one.
        watcher = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await self._stream_until(watcher, send)
        except OSError:
            # ASGI 2.4 servers report a disconnect by failing send().
            raise ClientDisconnect() from None
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
        if self.background is not None:
            await self.background()

    async def _stream_until(self, client_gone: asyncio.Future[None], send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            if client_gone.done():
                return
            body = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ExportFormat(StrEnum):
    ndjson = "ndjson"
    csv = "csv"


@router.get("/notes", response_class=ClosingStreamingResponse)
async def export_notes(
    export_format: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.ndjson,
) -> ClosingStreamingResponse:
    """Every note that is not deleted, oldest first: `?format=ndjson` (default) or `csv`."""
    if export_format is ExportFormat.csv:
        body = _export(_csv_lines, first=_csv_lines([FIELDS]))
        media_type = "text/csv"
    else:
        body = _export(_ndjson_lines)
        media_type = "application/x-ndjson"
    return ClosingStreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="notes.{export_format}"'},
    )


async def _export(
    encode: Callable[[Sequence[Sequence[Any]]], str], *, first: str = ""
) -> AsyncIterator[str]:
    if first:
        yield first
    async with db():
        result = await db.session.stream(
            select(*COLUMNS).order_by(Note.id).execution_options(yield_per=BATCH_SIZE)
        )
        try:
            async for rows in result.partitions():
                yield encode(rows)
        finally:
            # Ends the server-side cursor before the session rolls back; MySQL drivers
            # warn about a rollback over a half-read result.
            await result.close()


def _ndjson_lines(rows: Sequence[Sequence[Any]]) -> str:
    return "".join(
        json.dumps(dict(zip(FIELDS, row, strict=True)), default=_json_value) + "\n" for row in rows
    )


def _json_value(value: Any) -> str:
    # Timestamps in ISO 8601, like the JSON API; UUIDs as their usual string form.
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _csv_lines(rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
