"""The benchmark endpoints, written once against any middleware that offers a `db.session` proxy."""

from types import ModuleType
from typing import Any

from fastapi import FastAPI, HTTPException

from harness.config import ENGINE_ARGS
from items import DATABASE_URL, SESSION_ARGS, Item, ItemIn, ItemOut, list_items

__all__ = ["build_app"]


def build_app(package: ModuleType) -> FastAPI:
    """Serve the endpoints through `package.SQLAlchemyMiddleware` and `package.db`.

    Both fastapi-async-sqlalchemy and the generated `app.db` export these two
    names with the same signature, so the route code below is shared and any
    difference in the figures comes from the middleware alone.
    """
    db: Any = package.db
    app = FastAPI()
    app.add_middleware(
        package.SQLAlchemyMiddleware,
        db_url=DATABASE_URL,
        engine_args=ENGINE_ARGS,
        session_args=SESSION_ARGS,
    )

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}", response_model=ItemOut)
    async def read_item(item_id: int) -> Item:
        item: Item | None = await db.session.get(Item, item_id)
        if item is None:
            raise HTTPException(status_code=404, detail="item not found")
        return item

    @app.get("/items", response_model=list[ItemOut])
    async def read_items() -> list[Item]:
        return list((await db.session.scalars(list_items)).all())

    @app.post("/items", response_model=ItemOut, status_code=201)
    async def create_item(body: ItemIn) -> Item:
        item = Item(name=body.name, value=body.value)
        db.session.add(item)
        await db.session.commit()
        return item

    return app
