"""A database that cannot be reached: every route that needs it answers 503 with Retry-After.

The service keeps running and recovers by itself once the database is back, so the
client is told to retry; the log gets one line naming the failure, not a traceback.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.db import create_engine, db
from app.web.errors import RETRY_AFTER_SECONDS
from tests.api.test_health import SECRET_PASSWORD, unreachable_url
from tests.conftest import serve, terminate_backend

SOME_USER = uuid.UUID(int=7)
NEW_USER = {"email": "down@example.com", "username": "down"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/users/{SOME_USER}", None),  # the ORM, through the request's session
        ("GET", f"/profiles/{SOME_USER}", None),  # a standalone read (db.read)
        ("GET", "/users?limit=5", None),  # a keyset page
        ("POST", "/users", NEW_USER),  # a write, flushed in the route
        ("GET", "/notes", None),  # the SessionDep style
        ("GET", "/export/notes", None),  # a stream, whose first batch is read first
    ],
)
async def test_a_database_that_is_down_gets_503_with_retry_after(
    make_live_app: Callable[..., FastAPI],
    database_urls: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    app = make_live_app(database_url=unreachable_url(database_urls["main"]))
    async with serve(app) as client:
        caplog.clear()  # what startup logged about the database is readiness's
        with caplog.at_level(logging.INFO, logger="app"):
            response = await client.request(method, path, json=body)

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "retry" in error["message"].lower()
    assert SECRET_PASSWORD not in response.text
    problems = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(problems) == 1, [record.getMessage() for record in problems]
    assert problems[0].levelno == logging.WARNING
    assert problems[0].exc_info is None
    assert "database is unavailable" in problems[0].getMessage()
    assert SECRET_PASSWORD not in problems[0].getMessage()


@pytest.mark.postgresql
@pytest.mark.direct_connection(
    "it ends the server backend of the app's connection, which behind PgBouncer is "
    "PgBouncer's: the client's connection stays open"
)
async def test_a_connection_lost_in_the_middle_of_a_statement_gets_503(
    make_live_app: Callable[..., FastAPI],
    database_urls: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing of the request can have committed: the server ended its transaction.
    marker = uuid.uuid4().hex
    app = make_live_app()

    @app.get("/slow")
    async def slow() -> None:
        await db.session.execute(text(f"SELECT pg_sleep(30) AS slept_{marker}"))

    watcher_engine = create_engine(database_urls["main"])
    try:
        async with serve(app) as client, watcher_engine.connect() as watcher:
            request = asyncio.ensure_future(client.get("/slow"))
            pid = None
            for _ in range(200):  # at most 10 s for the statement to reach the server
                if request.done():
                    break
                pid = await watcher.scalar(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE state = 'active'"
                        " AND pid <> pg_backend_pid() AND query LIKE :marked"
                    ),
                    {"marked": f"%{marker}%"},
                )
                await watcher.rollback()  # the next look gets a fresh statistics snapshot
                if pid is not None:
                    break
                await asyncio.sleep(0.05)
            assert pid is not None, "the statement never reached the server"
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="app"):
                await terminate_backend(watcher, pid)
                response = await asyncio.wait_for(request, 10)
    finally:
        await watcher_engine.dispose()

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["error"]["code"] == "database_unavailable"
    problems = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [(record.levelno, record.exc_info) for record in problems] == [(logging.WARNING, None)]
    assert "connection to the database was lost" in problems[0].getMessage()
