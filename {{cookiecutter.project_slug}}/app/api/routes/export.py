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

On PostgreSQL the server writes each batch's lines and sends them as one value: a
batch costs the app one row instead of five thousand, and the export streams about
twice the rows per second it did when the app read the rows and wrote the lines. On
the other databases rows are read with Core statements and written with a
precomputed line template. Either way the deleted authors' notes are left out by
their ids, known at the start, rather than by a join, which would cost an index
lookup per note.

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
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, Text, bindparam, func, literal_column, select
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from app.api.deps import SettingsDep
from app.db import INCLUDE_DELETED, db
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

# Rows in the order of COLUMNS, the id first.
Batch = Sequence[Sequence[Any]]


class ClosingStreamingResponse(StreamingResponse):
    """Streams until the body ends, the client leaves or stops reading; then closes the body."""

    def __init__(
        self,
        content: AsyncIterator[str | bytes],
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
    header, media_type = _HEADERS[export_format]
    # A full pool (CapacityError) or a database that is down (DatabaseUnavailableError)
    # raises here, before the response starts: app.errors answers 503 with Retry-After.
    plan, first = await _first_batch(export_format)
    return ClosingStreamingResponse(
        _export(plan, first, header=header),
        send_timeout=settings.export_send_timeout,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="notes.{export_format}"'},
    )


@dataclass(frozen=True)
class _Chunk:
    """One batch, written: `rows` notes read (the last with the id `last_id`) and their lines."""

    rows: int
    last_id: int
    lines: str | bytes


class _Plan:
    """What every batch of one export reads: notes up to `last_id`, in `export_format`.

    On PostgreSQL the server writes the lines of a batch and returns them as one value;
    elsewhere the batch's rows are read and written here."""

    def __init__(
        self,
        last_id: int,
        export_format: ExportFormat,
        deleted_authors: frozenset[uuid.UUID] | None,
        *,
        on_postgresql: bool,
    ) -> None:
        self.last_id = last_id
        self._encode = _WRITERS[export_format]
        self._escapes_line_ends = on_postgresql and export_format is ExportFormat.ndjson
        # None: too many deleted authors to keep; every batch joins the author instead.
        batch = _BATCH if deleted_authors is not None else _BATCH_OF_LIVE_AUTHORS
        self._deleted = deleted_authors or frozenset()
        self._server_written: Select[Any] | None = None
        if on_postgresql:
            if self._deleted:
                batch = batch.where(_notes.user_id.not_in(self._deleted))
                self._deleted = frozenset()
            self._server_written = _written_by_postgresql(batch, export_format)
        self._batch = batch

    async def read(self, after: int) -> Batch | _Chunk:
        """The next `BATCH_SIZE` live notes after the id `after`, in the current unit of work."""
        parameters = {"after": after, "up_to": self.last_id}
        if self._server_written is not None:
            rows, last_id, lines = (
                await db.session.execute(self._server_written, parameters)
            ).one()
            if lines and self._escapes_line_ends:
                lines = _escape_line_ends(lines)
            return _Chunk(rows, last_id or after, lines or b"")
        batch: Batch = (await db.session.execute(self._batch, parameters)).all()
        return batch

    def written(self, read: Batch | _Chunk) -> _Chunk:
        """What `read()` returned, as lines; called once the connection has gone back."""
        if isinstance(read, _Chunk):
            return read
        if not read:
            return _Chunk(0, 0, "")
        deleted = self._deleted
        live = [row for row in read if row[1] not in deleted] if deleted else read
        return _Chunk(len(read), read[-1][0], self._encode(live))


async def _first_batch(export_format: ExportFormat) -> tuple[_Plan, _Chunk]:
    """The plan of the export, which ends at the newest note, and its first batch."""
    async with db():
        last_id = await db.session.scalar(select(func.max(Note.id)))
        deleted = frozenset((await db.session.execute(_DELETED_AUTHORS)).scalars())
        plan = _Plan(
            last_id or 0,
            export_format,
            deleted if len(deleted) <= MAX_DELETED_AUTHORS else None,
            on_postgresql=db.session.get_bind().dialect.name == "postgresql",
        )
        first = await plan.read(after=0) if last_id is not None else []
    return plan, plan.written(first)


async def _next_batch(plan: _Plan, after: int) -> _Chunk:
    # A unit of work of its own: the connection goes back to the pool before the
    # rows are written and sent, so a slow client costs no connection and no transaction.
    async with db():
        read = await plan.read(after)
    return plan.written(read)


async def _export(plan: _Plan, first: _Chunk, *, header: str) -> AsyncIterator[str | bytes]:
    if header:
        yield header
    chunk = first
    while chunk.rows:
        if chunk.lines:
            yield chunk.lines
        # A short batch is the last one; a full one may be followed by more.
        if chunk.rows < BATCH_SIZE:
            return
        chunk = await _next_batch(plan, after=chunk.last_id)


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


_WRITERS: dict[ExportFormat, Callable[[Batch], str]] = {
    ExportFormat.ndjson: _ndjson_lines,
    ExportFormat.csv: _csv_lines,
}
_HEADERS = {
    ExportFormat.ndjson: ("", "application/x-ndjson"),
    ExportFormat.csv: (_csv_lines([FIELDS]), "text/csv"),
}

# The same lines, written by PostgreSQL. to_json() escapes the free text as JSON and
# writes timestamps in ISO 8601. It leaves non-ASCII characters as they are, where
# json.dumps() writes \u escapes, and trims trailing zeros from the fraction of a second:
# the same values, spelled differently. CSV quotes the free text always, doubling its
# quotes, and writes timestamps in UTC, in the form the Python path writes.
_POSTGRESQL_LINES = {
    ExportFormat.ndjson: """concat(
        '{"id": ', notes.id, ', "user_id": "', notes.user_id,
        '", "title": ', to_json(notes.title), ', "body": ', to_json(notes.body),
        ', "created_at": ', to_json(notes.created_at),
        ', "updated_at": ', to_json(notes.updated_at), E'}\\n')""",
    ExportFormat.csv: """concat(
        notes.id, ',', notes.user_id,
        ',"', replace(notes.title, '"', '""'), '","', replace(notes.body, '"', '""'), '",',
        to_char(notes.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US"+00:00"'), ',',
        to_char(notes.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US"+00:00"'),
        E'\\n')""",
}
# Three characters that JSON allows in a string and that str.splitlines() and httpx's
# iter_lines() take for line ends. json.dumps() escapes them, to_json() does not, so the
# export escapes them in PostgreSQL's lines. Their UTF-8 bytes cannot be part of any
# other character, and a search for them costs a fraction of one for each line.
_LINE_ENDS = {
    "\u2028".encode(): b"\\u2028",
    "\u2029".encode(): b"\\u2029",
    "\u0085".encode(): b"\\u0085",
}


def _escape_line_ends(lines: bytes) -> bytes:
    for raw, escaped in _LINE_ENDS.items():
        if raw in lines:
            lines = lines.replace(raw, escaped)
    return lines


def _written_by_postgresql(batch: Select[Any], export_format: ExportFormat) -> Select[Any]:
    """`batch` as one row: how many notes it read, the last one's id, and their lines,
    in the batch's order, as UTF-8 bytes.

    One value per batch is what makes this fast: rows of lines would cost the driver a
    record per note. string_agg() takes the lines in the order the subquery returns them,
    which PostgreSQL's documentation gives as the way to order an aggregate's input
    without sorting it a second time."""
    line = literal_column(_POSTGRESQL_LINES[export_format], Text()).label("line")
    rows = batch.with_only_columns(_notes.id, line).subquery()
    lines = func.string_agg(rows.c.line, literal_column("''"))
    return select(
        func.count(), func.max(rows.c.id), func.convert_to(lines, literal_column("'UTF8'"))
    ).execution_options(**INCLUDE_DELETED)
