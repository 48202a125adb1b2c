"""The baked project's `app.db` session layer on the shared endpoints, plus the streaming export."""

import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from sqlalchemy import select

import app.db as session_layer
from items import Item
from proxy_app import build_app

db = session_layer.db
app = build_app(session_layer)

EXPORT_BATCH = 1000


@app.get("/export")
async def export_items() -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        # The request session is closed before the body is generated, so the
        # generator opens its own session and keeps it for every chunk.
        async with db():
            result = await db.session.stream(
                select(Item.id, Item.name, Item.value)
                .order_by(Item.id)
                .execution_options(yield_per=EXPORT_BATCH)
            )
            async for rows in result.partitions():
                yield "".join(json.dumps(row._asdict()) + "\n" for row in rows)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
