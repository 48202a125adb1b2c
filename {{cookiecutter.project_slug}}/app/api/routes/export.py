"""Streaming export: every live note as NDJSON or CSV, holding no connection while it waits.

The notes are read by keyset, `BATCH_SIZE` at a time (`WHERE id > last id ORDER BY id`),
each batch in a unit of work of its own (`async with db():`). A connection is checked out
only while one batch's query runs; while the client reads, however slowly, the export
holds no connection and no transaction, and memory holds one batch. The first batch is
read in the request, before the response starts, so a full pool or a database that is
down becomes a 503 with Retry-After instead of a 200 with an empty body. The export ends
at the newest note that existed when it started, so it finishes even while notes are
being written. It is not a snapshot: a note changed during the export shows the state it
had when its batch was read, and the authors deleted when it started are the ones whose
notes it leaves out.

Rows are read with Core statements and written with a precomputed line template, and the
deleted authors' notes are skipped by id in Python rather than by a join, which would
cost an index lookup per note: together that is about ten times the rows per second of
ORM rows, a join and json.dumps() per row.

`ClosingStreamingResponse` bounds what a client can hold of the server. Starlette's own
StreamingResponse reacts to a disconnect by cancelling the task that runs the generator,
possibly in the middle of a query, which some drivers (aiomysql) answer by breaking the
connection; and it never closes the generator. This one checks between chunks whether the
client has gone, closes the generator itself, and ends the stream when a client takes no
data for `send_timeout` seconds (`EXPORT_SEND_TIMEOUT`), so a stalled reader cannot keep a
request running until the server shuts down.
"""

import asyncio
import csv
import io
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Annotated, Any

import anyio
import sqlalchemy.exc
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, bindparam, func, select
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from app.api.deps import SettingsDep
from app.db import INCLUDE_DELETED, CapacityError, db
from app.errors import RETRY_AFTER_SECONDS
from app.models.note import Note
from app.models.user import User
from app.schemas.errors import error_responses

__all__ = ["BATCH_SIZE", "ClosingStreamingResponse", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/export", tags=["export"])

BATCH_SIZE = 5000
# The export leaves out the notes of deleted authors. Up to this many deleted authors,
# their ids are read once at the start and their notes skipped in Python; past it, every
# batch joins the author instead, which costs an index lookup per note.
MAX_DELETED_AUTHORS = 10_000
_notes, _users = Note.__table__.c, User.__table__.c
COLUMNS = (
    _notes.id,
    _notes.user_id,
    _notes.title,
    _notes.body,
    _notes.created_at,
    _notes.updated_at,
)
FIELDS = [column.key for column in COLUMNS]

# Core statements, compiled once and cached: batches are read without the ORM, so rows
# are plain tuples. They write the live filter out and tell the layer's soft-delete
# listener to leave them alone.
_BATCH = (
    select(*COLUMNS)
    .where(
        _notes.id > bindparam("after"),
        _notes.id <= bindparam("up_to"),
        _notes.deleted_at.is_(None),
    )
    .order_by(_notes.id)
    .limit(BATCH_SIZE)
    .execution_options(**INCLUDE_DELETED)
)
_BATCH_OF_LIVE_AUTHORS = _BATCH.join_from(
    Note.__table__, User.__table__, _notes.user_id == _users.id
).where(_users.deleted_at.is_(None))
_DELETED_AUTHORS = (
    select(_users.id)
    .where(_users.deleted_at.is_not(None))
    .limit(MAX_DELETED_AUTHORS + 1)
    .execution_options(**INCLUDE_DELETED)
)

# How a database that cannot be reached shows itself when a connection is opened: the
# drivers raise OSError (asyncpg), or an error SQLAlchemy wraps (aiomysql, aiosqlite).
_UNREACHABLE = (OSError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)

# Rows in the order of COLUMNS, the id first.
Batch = Sequence[Sequence[Any]]


class ClosingStreamingResponse(StreamingResponse):
    """Streams until the body ends, the client leaves or stops reading; then closes the body."""

    def __init__(
        self,
        content: AsyncIterator[str],
        *,
        send_timeout: float,
        media_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.send_timeout = send_timeout

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
            message = {"type": "http.response.body", "body": body, "more_body": True}
            if not await self._send_in_time(send, message):
                return
        await self._send_in_time(send, {"type": "http.response.body", "more_body": False})

    async def _send_in_time(self, send: Send, message: Message) -> bool:
        """Send `message`, or give up after `send_timeout`; False when the client stalled."""
        # A server's send() blocks while the client's socket is full. Giving up without
        # the final message makes the server close the connection, so the client sees
        # the body cut short rather than a complete-looking export with rows missing.
        try:
            async with asyncio.timeout(self.send_timeout):
                await send(message)
        except TimeoutError:
            logger.warning(
                "export stopped: the client took no data for %s seconds", self.send_timeout
            )
            return False
        return True


class ExportFormat(StrEnum):
    ndjson = "ndjson"
    csv = "csv"


# The status is given because FastAPI reads it from the response class's __init__
# default otherwise, and ClosingStreamingResponse takes none.
@router.get(
    "/notes",
    response_class=ClosingStreamingResponse,
    status_code=200,
    responses=error_responses(503),
)
async def export_notes(
    settings: SettingsDep,
    export_format: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.ndjson,
) -> ClosingStreamingResponse:
    """Every note that is not deleted, oldest first: `?format=ndjson` (default) or `csv`.

    Answers 503 with Retry-After when no database connection is to be had.
    """
    encode: Callable[[Batch], str]
    if export_format is ExportFormat.csv:
        encode, header, media_type = _csv_lines, _csv_lines([FIELDS]), "text/csv"
    else:
        encode, header, media_type = _ndjson_lines, "", "application/x-ndjson"
    try:
        plan, first = await _first_batch()
    except CapacityError:
        raise  # the pool stayed full: app.errors answers 503 with Retry-After
    except _UNREACHABLE as exc:
        logger.warning("no database for the export: %s", exc)
        raise HTTPException(
            503,
            "The database is unavailable; retry after the number of seconds in Retry-After.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc
    return ClosingStreamingResponse(
        _export(plan, first, encode, header=header),
        send_timeout=settings.export_send_timeout,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="notes.{export_format}"'},
    )


@dataclass(frozen=True)
class _Plan:
    """What every batch of one export reads: notes up to `last_id`, by `statement`,
    leaving out the notes by `deleted_authors`."""

    last_id: int
    statement: Select[Any]
    deleted_authors: frozenset[uuid.UUID]


async def _first_batch() -> tuple[_Plan, Batch]:
    """The plan of the export, which ends at the newest note, and its first batch."""
    async with db():
        last_id = await db.session.scalar(select(func.max(Note.id)))
        deleted = frozenset((await db.session.execute(_DELETED_AUTHORS)).scalars())
        if len(deleted) > MAX_DELETED_AUTHORS:
            plan = _Plan(last_id or 0, _BATCH_OF_LIVE_AUTHORS, frozenset())
        else:
            plan = _Plan(last_id or 0, _BATCH, deleted)
        if last_id is None:
            return plan, []
        return plan, await _read_batch(plan, after=0)


async def _next_batch(plan: _Plan, after: int) -> Batch:
    # A unit of work of its own: the connection goes back to the pool before the
    # rows are sent, so a slow client costs no connection and no transaction.
    async with db():
        return await _read_batch(plan, after=after)


async def _read_batch(plan: _Plan, *, after: int) -> Batch:
    """The next `BATCH_SIZE` live notes after the id `after`, in the current unit of work."""
    parameters = {"after": after, "up_to": plan.last_id}
    rows: Batch = (await db.session.execute(plan.statement, parameters)).all()
    return rows


async def _export(
    plan: _Plan, first: Batch, encode: Callable[[Batch], str], *, header: str
) -> AsyncIterator[str]:
    if header:
        yield header
    rows = first
    while rows:
        deleted = plan.deleted_authors
        yield encode([row for row in rows if row[1] not in deleted] if deleted else rows)
        # A short batch is the last one; a full one may be followed by more.
        if len(rows) < BATCH_SIZE:
            return
        rows = await _next_batch(plan, after=rows[-1][0])


# The line json.dumps() writes for a row, as a template: only the two free-text columns
# need escaping, and the C escaper json.dumps() itself uses does it. Timestamps are in
# ISO 8601, like the JSON API; UUIDs in their usual form.
_NDJSON_LINE = (
    '{"id": %d, "user_id": "%s", "title": %s, "body": %s, "created_at": "%s", "updated_at": "%s"}\n'
)
_escape = encode_basestring_ascii


def _ndjson_lines(rows: Batch) -> str:
    line, escape = _NDJSON_LINE, _escape
    return "".join(
        [
            line % (id_, user, escape(title), escape(body), made.isoformat(), changed.isoformat())
            for id_, user, title, body, made, changed in rows
        ]
    )


def _csv_lines(rows: Batch) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
