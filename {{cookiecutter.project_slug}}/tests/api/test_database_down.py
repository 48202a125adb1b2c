"""A database that cannot be reached: every route that needs it answers 503 with Retry-After.

The service keeps running and recovers by itself once the database is back, so the
client is told to retry; the log gets one line naming the failure, not a traceback.
"""

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from app.errors import RETRY_AFTER_SECONDS
from tests.api.test_health import SECRET_PASSWORD, unreachable_url
from tests.conftest import serve

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
