"""The baseline: idiomatic FastAPI with an `async_sessionmaker` and a `Depends` generator."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from harness.config import ENGINE_ARGS
from items import DATABASE_URL, SESSION_ARGS, Item, ItemIn, ItemOut, list_items
from service_tables import Note, User, UserIn, UserOut

# Module-level engine and sessionmaker are what the FastAPI and SQLAlchemy
# tutorials show, and what this contestant stands for.
engine = create_async_engine(DATABASE_URL, **ENGINE_ARGS)
SessionLocal = async_sessionmaker(engine, **SESSION_ARGS)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.get("/items/{item_id}", response_model=ItemOut)
async def read_item(item_id: int, session: SessionDep) -> Item:
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="item not found")
    return item


@app.get("/items", response_model=list[ItemOut])
async def read_items(session: SessionDep) -> list[Item]:
    return list((await session.scalars(list_items)).all())


@app.post("/items", response_model=ItemOut, status_code=201)
async def create_item(body: ItemIn, session: SessionDep) -> Item:
    item = Item(name=body.name, value=body.value)
    session.add(item)
    await session.commit()
    return item


@app.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, session: SessionDep) -> User:
    """The service's insert, the same two rows in the same tables: a user and its welcome
    note, in one commit, through the session."""
    user = User(email=body.email, username=body.username, full_name=body.full_name)
    user.notes.append(Note(title="Welcome!", body="Glad to have you here."))
    session.add(user)
    await session.commit()
    return user
