"""The ceiling: the shared endpoints on a bare asyncpg pool, with no ORM and no session."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException

from harness.config import LIST_SIZE, POOL_SIZE
from items import DATABASE_URL, ItemIn, ItemOut

# asyncpg wants a libpq-style URL, without SQLAlchemy's "+asyncpg" driver suffix.
DSN = DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://", 1)

pool: Any = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    # A fixed size, like the other contestants' pools, which never overflow.
    pool = await asyncpg.create_pool(DSN, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.get("/items/{item_id}", response_model=ItemOut)
async def read_item(item_id: int) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT id, name, value FROM items WHERE id = $1", item_id)
    if row is None:
        raise HTTPException(status_code=404, detail="item not found")
    return dict(row)


@app.get("/items", response_model=list[ItemOut])
async def read_items() -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT id, name, value FROM items ORDER BY id LIMIT $1", LIST_SIZE)
    return [dict(row) for row in rows]


@app.post("/items", response_model=ItemOut, status_code=201)
async def create_item(body: ItemIn) -> dict[str, Any]:
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "INSERT INTO items (name, value) VALUES ($1, $2) RETURNING id, name, value",
            body.name,
            body.value,
        )
    return dict(row)
