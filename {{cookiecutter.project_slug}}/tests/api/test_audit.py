"""The audited delete: one request, two databases, two commits, and what each failure leaves.

Every /admin route needs `Authorization: Bearer <SECRET_KEY>`; the `client` here sends it.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db import INCLUDE_DELETED
from app.models.audit_entry import AuditEntry
from app.models.user import User
from app.settings import Settings
from tests.conftest import serve
from tests.factories import make_user


@pytest.fixture
async def client(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app's client, sending the SECRET_KEY that /admin needs."""
    async with serve(app) as client:
        client.headers["Authorization"] = f"Bearer {settings.secret_key.get_secret_value()}"
        yield client


@pytest.fixture
async def audit_session(connections: dict[str, AsyncConnection]) -> AsyncIterator[AsyncSession]:
    """A session in the test's transaction on the audit database."""
    async with AsyncSession(
        bind=connections["audit"], join_transaction_mode="create_savepoint"
    ) as session:
        yield session


@contextmanager
def failing_flush(model: type, event_name: str) -> Iterator[None]:
    """Make every flush of `model` fail, as a lost connection or a full disk would."""

    def fail(*_: Any) -> None:
        raise RuntimeError(f"simulated failure writing {model.__name__}")

    event.listen(model, event_name, fail)
    try:
        yield
    finally:
        event.remove(model, event_name, fail)


async def entries(audit_session: AsyncSession) -> list[AuditEntry]:
    return list(await audit_session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def is_deleted(session: AsyncSession, user_id: uuid.UUID) -> bool:
    row = await session.scalar(
        select(User)
        .where(User.id == user_id)
        .execution_options(populate_existing=True, **INCLUDE_DELETED)
    )
    return row is not None and row.deleted_at is not None


async def test_delete_changes_the_main_database_and_records_it_in_the_audit_one(
    client: httpx.AsyncClient, session: AsyncSession, audit_session: AsyncSession
) -> None:
    user = await make_user(session, username="eve")

    response = await client.delete(f"/admin/users/{user.id}", params={"reason": "asked to"})

    assert response.status_code == 204
    assert await is_deleted(session, user.id)
    [entry] = await entries(audit_session)
    assert (entry.action, entry.subject_id) == ("user.deleted", str(user.id))
    assert entry.details == {"username": "eve", "reason": "asked to"}
    assert entry.request_id == response.headers["X-Request-ID"]


async def test_the_audit_log_lists_entries_newest_first(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    first, second = await make_user(session), await make_user(session)
    await client.delete(f"/admin/users/{first.id}")
    await client.delete(f"/admin/users/{second.id}")

    page = (await client.get("/admin/audit-log", params={"limit": 1, "count": "exact"})).json()
    rest = (await client.get("/admin/audit-log", params={"cursor": page["next_cursor"]})).json()

    assert page["total"] == 2
    listed = [item["subject_id"] for item in page["items"] + rest["items"]]
    assert listed == [str(second.id), str(first.id)]
    assert rest["next_cursor"] is None


async def test_a_missing_user_is_404_and_nothing_is_recorded(
    client: httpx.AsyncClient, audit_session: AsyncSession
) -> None:
    response = await client.delete(f"/admin/users/{uuid.uuid4()}")

    assert response.status_code == 404
    assert await entries(audit_session) == []


@pytest.mark.parametrize("reason", ["a\x00b", "x" * 501])
async def test_a_reason_the_audit_log_cannot_hold_is_422_and_nothing_changes(
    client: httpx.AsyncClient, session: AsyncSession, audit_session: AsyncSession, reason: str
) -> None:
    # PostgreSQL's JSONB, where the reason is stored, refuses the NUL character.
    user = await make_user(session)

    response = await client.delete(f"/admin/users/{user.id}", params={"reason": reason})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "query.reason"
    assert await entries(audit_session) == []
    await session.refresh(user)
    assert user.deleted_at is None


async def test_when_the_audit_commit_fails_neither_database_changes(
    client: httpx.AsyncClient, session: AsyncSession, audit_session: AsyncSession
) -> None:
    user = await make_user(session)

    with failing_flush(AuditEntry, "before_insert"):
        response = await client.delete(f"/admin/users/{user.id}")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert not await is_deleted(session, user.id)
    assert await entries(audit_session) == []


async def test_when_the_main_commit_fails_the_audit_entry_stays_as_a_failed_attempt(
    client: httpx.AsyncClient, session: AsyncSession, audit_session: AsyncSession
) -> None:
    user = await make_user(session)

    with failing_flush(User, "before_update"):
        response = await client.delete(f"/admin/users/{user.id}")

    # The audit database committed first; the main one then failed. The client is
    # told the request failed, the user is intact, and the log shows the attempt.
    assert response.status_code == 500
    assert not await is_deleted(session, user.id)
    [entry] = await entries(audit_session)
    assert entry.subject_id == str(user.id)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-secret", "Bearer test-secre", "Basic dGVzdC1zZWNyZXQ=", "test-secret"],
)
async def test_admin_routes_answer_401_without_the_secret_key(
    client: httpx.AsyncClient,
    session: AsyncSession,
    audit_session: AsyncSession,
    authorization: str | None,
) -> None:
    user = await make_user(session)
    del client.headers["Authorization"]
    headers = {} if authorization is None else {"Authorization": authorization}

    deleting = await client.delete(f"/admin/users/{user.id}", headers=headers)
    reading = await client.get("/admin/audit-log", headers=headers)

    for response in (deleting, reading):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
        assert "SECRET_KEY" in response.json()["error"]["message"]
    assert not await is_deleted(session, user.id)
    assert await entries(audit_session) == []


async def test_an_empty_secret_key_lets_nobody_in(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.settings = app.state.settings.model_copy(update={"secret_key": SecretStr("")})

    response = await client.get("/admin/audit-log", headers={"Authorization": "Bearer "})

    assert response.status_code == 401


async def test_the_openapi_document_declares_the_bearer_scheme_on_admin_routes(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    assert document["components"]["securitySchemes"]["SecretKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The service's SECRET_KEY: `Authorization: Bearer <SECRET_KEY>`.",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            secured = operation.get("security") == [{"SecretKey": []}]
            assert secured == path.startswith("/admin"), path
            if secured:
                assert "401" in operation["responses"]
