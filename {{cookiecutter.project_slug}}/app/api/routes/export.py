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
notes it leaves out. The session hides deleted notes and authors, as from every query.

`COLUMNS` lists what a line holds, once; the lines are written from it, by the app or,
on PostgreSQL, by the server: a batch then costs the app one row instead of five
thousand (docs/performance.md has the rates of both). Either way the bytes
are the same (tests/api/test_export.py compares them): JSON strings escaped as
PostgreSQL's `to_json()` escapes them, non-ASCII characters as they are, timestamps in
UTC as `to_json()` writes them, and CSV fields quoted unless they are numbers. The deleted
authors' notes are left out by their ids, known at the start, rather than by a join,
which would cost an index lookup per note.

The body streams through `ClosingStreamingResponse` (app/web/streaming.py), which
ends it when the client leaves or takes no data for `EXPORT_SEND_TIMEOUT` seconds.
"""

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Text,
    Uuid,
    bindparam,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute

from app.api.deps import SettingsDep
from app.db import INCLUDE_DELETED, UTCDateTime, db
from app.models.note import Note
from app.models.user import User
from app.web.error_body import error_responses
from app.web.streaming import ClosingStreamingResponse

__all__ = ["BATCH_SIZE", "COLUMNS", "router"]

router = APIRouter(prefix="/export", tags=["export"])

BATCH_SIZE = 5000
# The export leaves out the notes of deleted authors. Up to this many deleted authors,
# their ids are read once at the start and their notes skipped; past it, every batch
# joins the author instead, which costs an index lookup per note.
MAX_DELETED_AUTHORS = 10_000

# What each line holds, in order; the id comes first.
COLUMNS: tuple[InstrumentedAttribute[Any], ...] = (
    Note.id,
    Note.user_id,
    Note.title,
    Note.body,
    Note.created_at,
    Note.updated_at,
)
FIELDS = [column.key for column in COLUMNS]

_BATCH = (
    select(*COLUMNS)
    .where(Note.id > bindparam("after"), Note.id <= bindparam("up_to"))
    .order_by(Note.id)
    .limit(BATCH_SIZE)
)
_BATCH_OF_LIVE_AUTHORS = _BATCH.join(Note.author)
_DELETED_AUTHORS = (
    select(User.id)
    .where(User.is_deleted)
    .limit(MAX_DELETED_AUTHORS + 1)
    .execution_options(**INCLUDE_DELETED)
)

# Rows in the order of COLUMNS.
Batch = Sequence[Sequence[Any]]


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
    writer = _WRITERS[export_format]
    # A full pool (CapacityError) or a database that is down (DatabaseUnavailableError)
    # raises here, before the response starts: app.web.errors answers 503 with Retry-After.
    plan, first = await _first_batch(writer)
    return ClosingStreamingResponse(
        _export(plan, first, header=writer.header),
        send_timeout=settings.export_send_timeout,
        media_type=writer.media_type,
        headers={"Content-Disposition": f'attachment; filename="notes.{export_format}"'},
    )


@dataclass(frozen=True)
class _Chunk:
    """One batch, written: `rows` notes read (the last with the id `last_id`) and their lines."""

    rows: int
    last_id: int
    lines: str | bytes


class _Plan:
    """What every batch of one export reads: live notes up to `last_id`, written by `writer`.

    On PostgreSQL the server writes the lines of a batch and returns them as one value;
    elsewhere the batch's rows are read and written here."""

    def __init__(
        self,
        last_id: int,
        writer: "_Writer",
        deleted_authors: frozenset[uuid.UUID] | None,
        *,
        on_postgresql: bool,
    ) -> None:
        self.last_id = last_id
        self.writer = writer
        # None: too many deleted authors to keep; every batch joins the author instead.
        batch = _BATCH if deleted_authors is not None else _BATCH_OF_LIVE_AUTHORS
        self._deleted = deleted_authors or frozenset()
        self._server_written: Select[Any] | None = None
        if on_postgresql:
            if self._deleted:
                batch = batch.where(Note.user_id.not_in(self._deleted))
                self._deleted = frozenset()
            self._server_written = _written_by_postgresql(batch, writer.line_sql)
        self._batch = batch

    async def read(self, after: int) -> Batch | _Chunk:
        """The next `BATCH_SIZE` live notes after the id `after`, in the current unit of work."""
        parameters = {"after": after, "up_to": self.last_id}
        if self._server_written is not None:
            rows, last_id, lines = (
                await db.session.execute(self._server_written, parameters)
            ).one()
            return _Chunk(rows, last_id or after, self.writer.finish(lines or b""))
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
        return _Chunk(len(read), read[-1][0], self.writer.lines(live))


async def _first_batch(writer: "_Writer") -> tuple[_Plan, _Chunk]:
    """The plan of the export, which ends at the newest note, and its first batch."""
    async with db():
        last_id = await db.session.scalar(select(func.max(Note.id)))
        deleted = frozenset((await db.session.execute(_DELETED_AUTHORS)).scalars())
        plan = _Plan(
            last_id or 0,
            writer,
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


# How each column's values are spelled, by the kind of the column: numbers as they are;
# timestamps in ISO 8601 in UTC, as PostgreSQL's to_json() writes them (exact to the
# microsecond, the fraction of a second without trailing zeros); UUIDs in their usual
# form; text escaped as the format needs. Timestamps and UUIDs hold no character that
# JSON or CSV escapes, so both formats write them in double quotes as they are.
_NUMBER, _TIMESTAMP, _UUID, _TEXT = "number", "timestamp", "uuid", "text"
# JSON strings escaped as PostgreSQL's to_json() escapes them, which is also how the
# standard library does without ensure_ascii: quote, backslash and control characters.
_json_string = json.JSONEncoder(ensure_ascii=False).encode


def _kind(column: InstrumentedAttribute[Any]) -> str:
    column_type = column.type
    if isinstance(column_type, Integer):
        return _NUMBER
    if isinstance(column_type, UTCDateTime):
        return _TIMESTAMP
    return _UUID if isinstance(column_type, Uuid) else _TEXT


def _utc_timestamp(value: datetime) -> str:
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    return text.rstrip("0").rstrip(".") + "+00:00"


def _spelled(kind: str) -> Callable[[Any], Any]:
    """The value of a column of `kind` as the export writes it."""
    if kind == _NUMBER:
        return int
    return _utc_timestamp if kind == _TIMESTAMP else str


def _line_sql(
    separators: Sequence[str], end: str, text: Callable[[Any], ColumnElement[str]]
) -> ColumnElement[str]:
    """A line as PostgreSQL writes it, spelled as `_spelled()` spells it: each column after
    its separator, text through `text`, then `end`.

    The quotes around a timestamp or a UUID join the separators around it: concat() is
    called once per line, with as few arguments as the line has parts."""
    parts: list[Any] = []
    before = ""
    for separator, column in zip(separators, COLUMNS, strict=True):
        before += separator
        after = ""
        value: ColumnElement[Any] | InstrumentedAttribute[Any]
        kind = _kind(column)
        if kind == _NUMBER:
            value = column
        elif kind == _TEXT:
            value = text(column)
        elif kind == _UUID:
            before, value, after = before + '"', column, '"'
        else:
            # to_json() writes ISO 8601 whatever the session's DateStyle, opening quote
            # included, at half the cost of to_char(); the offset goes before the closing one.
            as_json = cast(func.to_json(func.timezone("UTC", column)), Text)
            value, after = func.rtrim(as_json, '"'), '+00:00"'
        parts += [literal(before), value]
        before = after
    parts.append(literal(before + end))
    return func.concat(*parts)


_KINDS = [_kind(column) for column in COLUMNS]
_SPELLINGS = [_spelled(kind) for kind in _KINDS]


def _spelled_rows(rows: Batch) -> list[list[Any]]:
    return [[spell(value) for spell, value in zip(_SPELLINGS, row, strict=True)] for row in rows]


# Three characters that JSON allows in a string and that str.splitlines() and httpx's
# iter_lines() take for line ends: an NDJSON line escapes them, wherever it was written.
# Their UTF-8 bytes cannot be part of any other character.
_LINE_ENDS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}
_LINE_END_BYTES = {raw.encode(): escaped.encode() for raw, escaped in _LINE_ENDS.items()}


@dataclass(frozen=True)
class _Writer:
    """One format: its header and media type, its lines as the app writes them from rows,
    and as PostgreSQL writes them (`line_sql`) with what is done to those afterwards."""

    media_type: str
    header: str
    lines: Callable[[Batch], str]
    line_sql: ColumnElement[str]
    finish: Callable[[bytes], bytes] = bytes


def _ndjson_lines(rows: Batch) -> str:
    template = _NDJSON_TEMPLATE
    return _escape_line_ends("".join([template % tuple(row) for row in _ndjson_values(rows)]))


def _ndjson_values(rows: Batch) -> list[list[Any]]:
    return [
        [
            value if kind == _NUMBER else _json_string(value)
            for kind, value in zip(_KINDS, row, strict=True)
        ]
        for row in _spelled_rows(rows)
    ]


def _escape_line_ends(lines: str) -> str:
    for raw, escaped in _LINE_ENDS.items():
        if raw in lines:
            lines = lines.replace(raw, escaped)
    return lines


def _escape_line_end_bytes(lines: bytes) -> bytes:
    for raw, escaped in _LINE_END_BYTES.items():
        if raw in lines:
            lines = lines.replace(raw, escaped)
    return lines


_NDJSON_SEPARATORS = [("{" if n == 0 else ", ") + f'"{field}": ' for n, field in enumerate(FIELDS)]
_NDJSON_TEMPLATE = "%s".join(_NDJSON_SEPARATORS) + "%s}\n"


def _csv_lines(rows: Batch) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
    return buffer.getvalue()


def _csv_quoted(column: Any) -> ColumnElement[str]:
    return func.concat('"', func.replace(column, '"', '""'), '"')


_WRITERS = {
    ExportFormat.ndjson: _Writer(
        "application/x-ndjson",
        "",
        _ndjson_lines,
        _line_sql(_NDJSON_SEPARATORS, "}\n", func.to_json),
        _escape_line_end_bytes,
    ),
    ExportFormat.csv: _Writer(
        "text/csv",
        _csv_lines([FIELDS]),
        lambda rows: _csv_lines(_spelled_rows(rows)),
        _line_sql(["", *[","] * (len(COLUMNS) - 1)], "\n", _csv_quoted),
    ),
}


def _written_by_postgresql(batch: Select[Any], line: ColumnElement[str]) -> Select[Any]:
    """`batch` as one row: how many notes it read, the last one's id, and their lines,
    in the batch's order, as UTF-8 bytes.

    One value per batch is what makes this fast: rows of lines would cost the driver a
    record per note. string_agg() takes the lines in the order the subquery returns them,
    which PostgreSQL's documentation gives as the way to order an aggregate's input
    without sorting it a second time."""
    rows = batch.with_only_columns(Note.id, line.label("line")).subquery()
    lines = func.string_agg(rows.c.line, literal(""))
    return select(func.count(), func.max(rows.c.id), func.convert_to(lines, literal("UTF8")))
