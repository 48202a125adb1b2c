"""Input no column can hold is a 422 in the error shape, on every backend, never a 500.

Each case here once reached the database and failed there, or would: an id past what
the column accepts, a cursor the list never gave out, a NUL character, a lone surrogate, and a
string that passes its length check but grows past its column when normalised.
"""

import base64
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import INTEGER_MAX
from app.models.note import Note
from app.models.user import User
from app.schemas.pages import MAX_CURSOR_LENGTH
from tests.factories import make_note, make_user

# The ids of every route that takes an `Integer` primary key in its path.
NOTE_ROUTES = [("GET", "/notes/{}"), ("PATCH", "/notes/{}"), ("DELETE", "/notes/{}")]
# Past a 32-bit column, past a BIGINT, and far past both.
TOO_LARGE = [INTEGER_MAX + 1, 2**63, 10**24]
# PostgreSQL cannot store U+0000; each string field of a user must refuse it.
USER_NULS = [("email", "n\x00l@example.com"), ("username", "n\x00l"), ("full_name", "N\x00L")]


def assert_invalid(response: httpx.Response, field: str) -> dict[str, Any]:
    """The 422 names `field` among its problems and has the documented shape."""
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert field in [problem["field"] for problem in error["details"]]
    return error


@pytest.mark.parametrize(("method", "path"), NOTE_ROUTES)
@pytest.mark.parametrize("note_id", [*TOO_LARGE, 0, -1])
async def test_an_id_the_column_cannot_hold_is_422(
    client: httpx.AsyncClient, method: str, path: str, note_id: int
) -> None:
    response = await client.request(method, path.format(note_id), json={"title": "t"})

    assert_invalid(response, "path.note_id")


@pytest.mark.parametrize(("method", "path"), NOTE_ROUTES)
async def test_the_largest_id_the_column_holds_reaches_the_database(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path.format(INTEGER_MAX), json={"title": "t"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# A fixed id, so that the test ids are the same in every xdist worker.
SOME_UUID = "6f1c2a9e-4b7d-4e3a-9c51-2d8e0f7b3a64"
# Each is a cursor the list never gave out: not base64, not JSON, the wrong shape, a key
# of the other list, a timestamp without its offset or past the calendar's end, an id
# the column cannot hold.
BAD_CURSORS = [
    ("/users", "!!!"),
    ("/users", "x"),
    ("/users", cursor_of({"a": 1})),
    ("/users", cursor_of([1])),
    ("/users", cursor_of(["2026-01-01T00:00:00", SOME_UUID])),
    ("/users", cursor_of(["9999-12-31T23:59:59-05:00", SOME_UUID])),
    ("/users", cursor_of(["2026-01-01T00:00:00+00:00", "not-a-uuid"])),
    ("/users", cursor_of([[[[[]]]], None])),
    ("/notes", cursor_of([INTEGER_MAX + 1])),
    ("/notes", cursor_of([-1])),
    ("/notes", cursor_of([True])),
    ("/notes", cursor_of(["2026-01-01T00:00:00+00:00", SOME_UUID])),
    ("/notes", "A" * (MAX_CURSOR_LENGTH + 1)),
]


@pytest.mark.parametrize(("path", "cursor"), BAD_CURSORS)
async def test_a_cursor_the_list_did_not_give_out_is_422(
    client: httpx.AsyncClient, path: str, cursor: str
) -> None:
    response = await client.get(path, params={"cursor": cursor})

    assert_invalid(response, "query.cursor")


@pytest.mark.parametrize("path", ["/users", "/notes"])
async def test_an_offset_is_no_parameter_of_the_lists(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, params={"offset": 10**24})

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/users", "/notes"])
async def test_the_largest_cursor_key_reaches_the_database_as_an_empty_page(
    client: httpx.AsyncClient, path: str
) -> None:
    last = (
        [INTEGER_MAX]
        if path == "/notes"
        else ["9999-12-31T23:59:59.999999+00:00", "ffffffff-ffff-ffff-ffff-ffffffffffff"]
    )

    response = await client.get(path, params={"cursor": cursor_of(last)})

    assert response.status_code == 200
    assert (response.json()["items"], response.json()["next_cursor"]) == ([], None)


@pytest.mark.parametrize(("field", "value"), USER_NULS)
async def test_a_nul_character_in_a_new_user_is_422(
    client: httpx.AsyncClient, session: AsyncSession, field: str, value: str
) -> None:
    body = {"email": "nul@example.com", "username": "nul", field: value}

    response = await client.post("/users", json=body)

    assert_invalid(response, f"body.{field}")
    assert await session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize(("field", "value"), USER_NULS)
async def test_a_nul_character_in_a_user_update_is_422(
    client: httpx.AsyncClient, session: AsyncSession, field: str, value: str
) -> None:
    user = await make_user(session)

    response = await client.patch(f"/users/{user.id}", json={field: value})

    assert_invalid(response, f"body.{field}")


@pytest.mark.parametrize("field", ["title", "body"])
async def test_a_nul_character_in_a_note_is_422(
    client: httpx.AsyncClient, session: AsyncSession, field: str
) -> None:
    author = await make_user(session)
    note = await make_note(session, author, title="kept")

    created = await client.post(
        "/notes", json={"user_id": str(author.id), "title": "t", field: "a\x00b"}
    )
    updated = await client.patch(f"/notes/{note.id}", json={field: "a\x00b"})

    error = assert_invalid(created, f"body.{field}")
    assert "NUL" in error["details"][0]["message"]
    assert_invalid(updated, f"body.{field}")
    await session.refresh(note)
    assert (note.title, note.body) == ("kept", "")


async def test_a_lone_surrogate_is_422(client: httpx.AsyncClient) -> None:
    # JSON can spell a code point that no UTF-8 encoder, and so no driver, accepts.
    raw = b'{"email": "a@example.com", "username": "lone", "full_name": "\\ud800"}'

    headers = {"Content-Type": "application/json"}

    response = await client.post("/users", content=raw, headers=headers)

    error = assert_invalid(response, "body.full_name")
    assert "unicode" in error["details"][0]["message"]


async def test_an_email_that_lengthens_past_its_column_when_lower_cased_is_422(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # 305 characters as sent, 605 once lower-cased: "İ".lower() is "i" and a combining dot.
    email = "İ" * 300 + "@b.co"

    response = await client.post("/users", json={"email": email, "username": "dotted"})

    error = assert_invalid(response, "body.email")
    assert "605" in error["details"][0]["message"]
    assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_an_email_that_fits_its_column_once_lower_cased_is_stored(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = "İ" * 157 + "@b.co"  # 319 characters as stored

    response = await client.post("/users", json={"email": email, "username": "dotted"})

    assert response.status_code == 201, response.text
    assert response.json()["email"] == email.lower()
    assert len(response.json()["email"]) == 319


async def test_an_email_update_is_checked_as_stored_too(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.patch(f"/users/{user.id}", json={"email": "İ" * 300 + "@b.co"})

    assert_invalid(response, "body.email")


async def test_a_body_that_is_not_utf8_is_400_in_the_error_shape(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post(
        "/notes", content=b'{"title": "\xff"}', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert await session.scalar(select(func.count()).select_from(Note)) == 0


async def test_every_route_documents_the_errors_it_can_return(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    statuses = {
        (method.upper(), path): sorted(
            int(status) for status in operation["responses"] if int(status) >= 400
        )
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if path.startswith(("/users", "/profiles", "/notes", "/stats", "/export"))
    }

    assert statuses == {
        ("POST", "/users"): [400, 409, 413, 422, 503],
        ("GET", "/users"): [422, 503],
        ("GET", "/users/{user_id}"): [404, 422, 503],
        ("PATCH", "/users/{user_id}"): [400, 404, 409, 413, 422, 503],
        ("DELETE", "/users/{user_id}"): [404, 422, 503],
        ("GET", "/profiles/{user_id}"): [404, 422, 503],
        ("POST", "/notes"): [400, 404, 413, 422, 503],
        ("GET", "/notes"): [422, 503],
        ("GET", "/notes/{note_id}"): [404, 422, 503],
        ("PATCH", "/notes/{note_id}"): [400, 404, 413, 422, 503],
        ("DELETE", "/notes/{note_id}"): [404, 422, 503],
        ("GET", "/stats"): [503],
        ("GET", "/export/notes"): [422, 503],
    }


async def test_the_documented_bounds_are_the_enforced_ones(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    note_id = document["paths"]["/notes/{note_id}"]["get"]["parameters"][0]["schema"]
    cursor = next(
        parameter["schema"]
        for parameter in document["paths"]["/notes"]["get"]["parameters"]
        if parameter["name"] == "cursor"
    )

    assert (note_id["minimum"], note_id["maximum"]) == (1, INTEGER_MAX)
    assert cursor["anyOf"][0]["maxLength"] == MAX_CURSOR_LENGTH
