"""The /notes resource, written with SessionDep: the same contract as /users."""

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.note import Note
from tests.factories import make_note, make_user


async def test_create_returns_the_note_with_its_id(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    author = await make_user(session)

    response = await client.post(
        "/notes", json={"user_id": str(author.id), "title": "Groceries", "body": "Eggs"}
    )

    assert response.status_code == 201
    stored = await session.get(Note, response.json()["id"])
    assert stored is not None
    assert (stored.title, stored.body, stored.user_id) == ("Groceries", "Eggs", author.id)


async def test_create_for_a_missing_or_deleted_user_is_404(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    gone = await make_user(session)
    gone.soft_delete()
    await session.commit()

    for user_id in (uuid.uuid4(), gone.id):
        response = await client.post("/notes", json={"user_id": str(user_id), "title": "x"})
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"There is no user with id {user_id}."


async def test_create_rejects_an_empty_title(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    author = await make_user(session)

    response = await client.post("/notes", json={"user_id": str(author.id), "title": ""})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "body.title"


async def test_list_filters_by_user_and_pages_by_cursor_with_the_total(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    ann, ben = await make_user(session), await make_user(session)
    anns = [await make_note(session, ann) for _ in range(3)]
    await make_note(session, ben)
    params: dict[str, str | int] = {"user_id": str(ann.id), "limit": 2, "count": "exact"}

    page = (await client.get("/notes", params=params)).json()
    rest = (await client.get("/notes", params={**params, "cursor": page["next_cursor"]})).json()

    assert (page["total"], page["total_kind"]) == (3, "exact")
    assert [note["id"] for note in page["items"]] == [anns[0].id, anns[1].id]
    assert ([note["id"] for note in rest["items"]], rest["next_cursor"]) == ([anns[2].id], None)
    assert (await client.get("/notes", params={"count": "estimate"})).json()["total"] == 4


async def test_a_deleted_users_notes_leave_the_lists_and_cannot_be_read(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    stays = await make_user(session)
    kept = await make_note(session, stays)
    gone = await make_user(session)
    hidden = await make_note(session, gone)

    deleted = await client.delete(f"/users/{gone.id}")
    listed = (await client.get("/notes", params={"count": "exact"})).json()
    params = {"user_id": str(gone.id), "count": "exact"}
    filtered = (await client.get("/notes", params=params)).json()

    assert deleted.status_code == 204
    assert (listed["total"], [note["id"] for note in listed["items"]]) == (1, [kept.id])
    assert (filtered["total"], filtered["items"]) == (0, [])
    assert (await client.get(f"/notes/{hidden.id}")).status_code == 404
    assert (await client.patch(f"/notes/{hidden.id}", json={"title": "x"})).status_code == 404
    assert (await client.delete(f"/notes/{hidden.id}")).status_code == 404


async def test_read_and_404(client: httpx.AsyncClient, session: AsyncSession) -> None:
    note = await make_note(session, await make_user(session), title="Mine")

    assert (await client.get(f"/notes/{note.id}")).json()["title"] == "Mine"
    missing = await client.get("/notes/999999")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_patch_changes_only_the_fields_given_and_moves_updated_at(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    note = await make_note(session, await make_user(session), title="Old", body="Kept")

    response = await client.patch(f"/notes/{note.id}", json={"title": "New"})

    assert response.status_code == 200
    assert (response.json()["title"], response.json()["body"]) == ("New", "Kept")
    assert response.json()["updated_at"] > response.json()["created_at"]


async def test_patch_of_a_missing_note_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/notes/999999", json={"title": "New"})

    assert response.status_code == 404


async def test_delete_hides_the_note(client: httpx.AsyncClient, session: AsyncSession) -> None:
    note = await make_note(session, await make_user(session))

    assert (await client.delete(f"/notes/{note.id}")).status_code == 204

    assert (await client.get(f"/notes/{note.id}")).status_code == 404
    assert (await client.get("/notes", params={"count": "exact"})).json()["total"] == 0
    assert (await client.delete(f"/notes/{note.id}")).status_code == 404
