"""The /users resource: create, read, list, update and soft delete, written with db.session."""

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, delete, event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.api.routes.users import WELCOME_BODY, WELCOME_TITLE
from app.db import INCLUDE_DELETED, create_session_factory, db
from app.models.note import Note
from app.models.user import User
from app.schemas import pages
from app.schemas.pages import MAX_PAGE_SIZE
from tests.conftest import serve
from tests.factories import make_user


async def test_create_returns_the_user_and_stores_it_normalised(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post(
        "/users", json={"email": " Ada@Example.COM ", "username": "Ada", "full_name": "Ada L."}
    )

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["username"] == "ada"
    stored = await session.get(User, uuid.UUID(body["id"]))
    assert stored is not None
    # The columns' defaults, filled in for the Core INSERT as a flush would.
    assert (stored.email, stored.full_name, stored.preferences) == ("ada@example.com", "Ada L.", {})
    assert stored.deleted_at is None
    assert datetime.fromisoformat(body["created_at"]) == stored.created_at


async def test_create_writes_the_welcome_note_in_the_same_transaction(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post("/users", json={"email": "bo@example.com", "username": "bo"})

    assert response.status_code == 201
    notes = await session.scalars(
        select(Note).where(Note.user_id == uuid.UUID(response.json()["id"]))
    )
    [note] = notes.all()
    assert (note.title, note.body, note.deleted_at) == (WELCOME_TITLE, WELCOME_BODY, None)


async def test_a_welcome_note_that_cannot_be_written_leaves_no_user_and_no_201(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    def fail(_: object, __: object, statement: str, *___: object) -> None:
        if "INSERT INTO notes" in statement:
            raise RuntimeError("the disk is full")

    # The user's INSERT has run by then, in the request's transaction.
    event.listen(Engine, "before_cursor_execute", fail)
    try:
        response = await client.post("/users", json={"email": "lo@example.com", "username": "lo"})
    finally:
        event.remove(Engine, "before_cursor_execute", fail)

    assert response.status_code == 500
    assert (await session.scalars(select(User).where(User.username == "lo"))).all() == []


async def test_create_with_a_taken_email_is_a_conflict(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_user(session, email="cy@example.com", username="cy")

    response = await client.post("/users", json={"email": "CY@example.com", "username": "other"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert "already taken" in response.json()["error"]["message"]
    users = await session.scalars(select(User).where(User.username == "other"))
    assert users.all() == []


async def test_a_duplicate_that_reaches_the_handlers_is_still_a_409(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    taken = await make_user(session)

    @app.post("/probe/duplicate")
    async def duplicate() -> None:
        db.session.add(User(email=taken.email, username="someone-else"))
        await db.session.flush()  # raises IntegrityError; no route code catches it

    response = await client.post("/probe/duplicate")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


async def test_create_rejects_an_invalid_body_naming_each_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json={"email": "not-an-address", "username": ""})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert {detail["field"] for detail in error["details"]} == {"body.email", "body.username"}


async def test_read_returns_the_user(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session, full_name="Dee")

    response = await client.get(f"/users/{user.id}")

    assert response.status_code == 200
    assert response.json()["full_name"] == "Dee"


async def test_read_of_a_missing_user_is_404(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()

    response = await client.get(f"/users/{missing}")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": f"There is no user with id {missing}.",
        "request_id": response.headers["X-Request-ID"],
    }


@pytest.fixture
async def committed(engines: dict[str, AsyncEngine]) -> AsyncIterator[AsyncSession]:
    """A session that commits for real: GET /users reads standalone, outside the test's
    transaction, and sees only what is committed. The users it made go afterwards."""
    async with create_session_factory(engines["main"])() as session:
        yield session
    async with engines["main"].begin() as connection:
        await connection.execute(delete(Note))
        await connection.execute(delete(User))


async def test_list_pages_through_users_by_cursor_oldest_first(
    client: httpx.AsyncClient, committed: AsyncSession
) -> None:
    created = [await make_user(committed) for _ in range(5)]
    # Two users created in the same microsecond, across a page boundary: the id orders
    # them (as each backend compares its UUID column), and no page repeats or skips one.
    created[2].created_at = created[1].created_at
    await committed.commit()
    whole = (await client.get("/users")).json()["items"]

    pages = [(await client.get("/users", params={"limit": 2})).json()]
    while pages[-1]["next_cursor"] is not None:
        cursor = pages[-1]["next_cursor"]
        pages.append((await client.get("/users", params={"limit": 2, "cursor": cursor})).json())

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    listed = [user["id"] for page in pages for user in page["items"]]
    assert listed == [user["id"] for user in whole]
    ids = [str(user.id) for user in created]
    assert (listed[0], set(listed[1:3]), listed[3:]) == (ids[0], set(ids[1:3]), ids[3:])
    assert {(page["total"], page["total_kind"], page["limit"]) for page in pages} == {
        (None, None, 2)
    }


async def test_a_page_that_ends_the_list_exactly_has_no_next_cursor(
    client: httpx.AsyncClient, committed: AsyncSession
) -> None:
    for _ in range(2):
        await make_user(committed)

    page = (await client.get("/users", params={"limit": 2})).json()

    assert (len(page["items"]), page["next_cursor"]) == (2, None)


async def test_a_deleted_user_leaves_the_list_and_its_cursor_still_works(
    client: httpx.AsyncClient, committed: AsyncSession
) -> None:
    first, second, third = [await make_user(committed) for _ in range(3)]
    page = (await client.get("/users", params={"limit": 1})).json()
    first.soft_delete()
    await committed.commit()

    rest = (await client.get("/users", params={"cursor": page["next_cursor"]})).json()

    assert [user["id"] for user in rest["items"]] == [str(second.id), str(third.id)]


async def test_count_exact_adds_the_total(
    client: httpx.AsyncClient, committed: AsyncSession
) -> None:
    for _ in range(3):
        await make_user(committed)

    page = (await client.get("/users", params={"limit": 1, "count": "exact"})).json()

    assert (page["total"], page["total_kind"]) == (3, "exact")


async def test_count_estimate_is_exact_below_the_counting_bound(
    client: httpx.AsyncClient, committed: AsyncSession
) -> None:
    # The test database's estimate is small or missing, so the count is exact.
    for _ in range(3):
        await make_user(committed)

    page = (await client.get("/users", params={"count": "estimate"})).json()

    assert (page["total"], page["total_kind"]) == (3, "exact")


async def test_count_exact_stops_at_its_bound(
    client: httpx.AsyncClient, committed: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "MAX_EXACT_COUNT", 2)
    for _ in range(4):
        await make_user(committed)

    page = (await client.get("/users", params={"limit": 1, "count": "exact"})).json()

    assert (page["total"], page["total_kind"]) == (3, "at_least")


async def test_list_refuses_a_page_larger_than_the_bound(client: httpx.AsyncClient) -> None:
    response = await client.get("/users", params={"limit": MAX_PAGE_SIZE + 1})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "query.limit"


async def test_patch_changes_only_the_fields_given(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, full_name="Before")

    response = await client.patch(f"/users/{user.id}", json={"full_name": "After"})

    assert response.status_code == 200
    assert response.json()["full_name"] == "After"
    assert response.json()["email"] == user.email
    assert response.json()["updated_at"] > response.json()["created_at"]


async def test_patch_to_a_taken_username_is_a_conflict_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_user(session, username="taken")
    user = await make_user(session, username="mine", full_name="Same")

    response = await client.patch(f"/users/{user.id}", json={"username": "taken", "full_name": "X"})

    assert response.status_code == 409
    await session.refresh(user)
    assert (user.username, user.full_name) == ("mine", "Same")


async def test_patch_refuses_null_for_a_required_field(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.patch(f"/users/{user.id}", json={"email": None})

    assert response.status_code == 422


@pytest.mark.parametrize("body", ["UserUpdate", "NoteUpdate"])
async def test_patch_bodies_are_documented_without_null(
    client: httpx.AsyncClient, body: str
) -> None:
    # The API refuses null (above), so the schema that clients and fuzzers generate
    # bodies from must not offer it, nor call it the default of a field left out.
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"][body]
    assert schema["properties"]
    for name, field in schema["properties"].items():
        assert "null" not in str(field), (name, field)
        assert "default" not in field, (name, field)
        assert "anyOf" not in field, (name, field)


async def test_patch_of_a_missing_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"/users/{uuid.uuid4()}", json={"full_name": "X"})

    assert response.status_code == 404


async def test_delete_hides_the_user_but_keeps_the_row(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    deleted = await client.delete(f"/users/{user.id}")

    assert deleted.status_code == 204
    assert (await client.get(f"/users/{user.id}")).status_code == 404
    assert (await client.get("/users", params={"count": "exact"})).json()["total"] == 0
    kept = await session.scalar(
        select(User).where(User.id == user.id).execution_options(**INCLUDE_DELETED)
    )
    assert kept is not None
    await session.refresh(kept)
    assert kept.deleted_at is not None


async def test_delete_of_a_missing_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete(f"/users/{uuid.uuid4()}")

    assert response.status_code == 404


async def test_a_deleted_users_email_and_username_can_be_registered_again(
    client: httpx.AsyncClient, session: AsyncSession, backend: str
) -> None:
    first = await client.post("/users", json={"email": "re@example.com", "username": "re"})
    await client.delete(f"/users/{first.json()['id']}")

    again = await client.post("/users", json={"email": "RE@example.com", "username": "Re"})

    if backend == "mysql":
        # MySQL and MariaDB have no partial unique index: the deleted row keeps its
        # values, and registering them again is refused (docs/models-and-migrations.md).
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        return
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    rows = await session.scalars(
        select(User).where(User.email == "re@example.com").execution_options(**INCLUDE_DELETED)
    )
    assert len(rows.all()) == 2


async def test_a_live_users_email_stays_unique_next_to_a_deleted_one(
    client: httpx.AsyncClient, backend: str
) -> None:
    first = await client.post("/users", json={"email": "tw@example.com", "username": "tw"})
    await client.delete(f"/users/{first.json()['id']}")
    again = await client.post("/users", json={"email": "tw@example.com", "username": "tw2"})

    third = await client.post("/users", json={"email": "tw@example.com", "username": "tw3"})
    patched = await client.patch(f"/users/{first.json()['id']}", json={"username": "tw2"})

    assert again.status_code == (409 if backend == "mysql" else 201)
    assert third.status_code == 409
    # The deleted user is gone for the API, so it cannot be renamed onto the live one.
    assert patched.status_code == 404


@pytest.fixture
async def live_client(
    make_live_app: Callable[..., FastAPI], engines: dict[str, AsyncEngine]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that commits for real, for /profiles, whose standalone reads
    see only what is committed; the users it creates are removed afterwards."""
    async with serve(make_live_app()) as client:
        yield client
    async with engines["main"].begin() as connection:
        made = (
            select(User.id).where(User.email.like("profile-%")).execution_options(**INCLUDE_DELETED)
        )
        await connection.execute(delete(Note).where(Note.user_id.in_(made)))
        await connection.execute(delete(User).where(User.email.like("profile-%")))


async def _create(client: httpx.AsyncClient, **fields: str) -> dict[str, str]:
    name = f"profile-{uuid.uuid4().hex[:8]}"
    body = {"email": f"{name}@example.com", "username": name, **fields}
    response = await client.post("/users", json=body)
    assert response.status_code == 201
    created: dict[str, str] = response.json()
    return created


async def test_the_profile_is_the_user_as_users_returns_it(live_client: httpx.AsyncClient) -> None:
    user = await _create(live_client, full_name="Ïda Ünicode")

    profile = await live_client.get(f"/profiles/{user['id']}")
    read = await live_client.get(f"/users/{user['id']}")

    assert (profile.status_code, profile.headers["content-type"]) == (200, "application/json")
    assert profile.json() == read.json() == user
    assert profile.json()["full_name"] == "Ïda Ünicode"


async def test_the_profile_of_a_deleted_or_missing_user_is_404(
    live_client: httpx.AsyncClient,
) -> None:
    user = await _create(live_client)
    assert (await live_client.delete(f"/users/{user['id']}")).status_code == 204
    missing = uuid.uuid4()

    deleted = await live_client.get(f"/profiles/{user['id']}")
    absent = await live_client.get(f"/profiles/{missing}")

    assert (deleted.status_code, absent.status_code) == (404, 404)
    assert absent.json()["error"]["message"] == f"There is no user with id {missing}."
    assert (await live_client.get("/profiles/not-a-uuid")).status_code == 422


async def test_the_profile_does_not_see_what_the_tests_transaction_has_not_committed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # The standalone read runs on a connection of its own, outside every transaction
    # but its own: the test's uncommitted user is not there for it, as it is for /users.
    user = await make_user(session)

    assert (await client.get(f"/users/{user.id}")).status_code == 200
    assert (await client.get(f"/profiles/{user.id}")).status_code == 404
