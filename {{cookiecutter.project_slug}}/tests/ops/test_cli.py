"""The command line uses the database outside any request, committing for real."""

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models.user import User
from app.ops.cli import CommandError, run
from app.settings import Settings

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def cleanup(engines: dict[str, AsyncEngine]) -> AsyncIterator[list[str]]:
    """Usernames the test creates for real; deleted afterwards."""
    usernames: list[str] = []
    yield usernames
    async with engines["main"].begin() as connection:
        await connection.execute(delete(User).where(User.username.in_(usernames)))


async def test_create_user_commits_the_user(
    settings: Settings, engines: dict[str, AsyncEngine], cleanup: list[str]
) -> None:
    cleanup.append("cli-user")

    output = await run(["create-user", "CLI@example.com", "cli-user"], settings)

    assert output.startswith("created user cli-user (")
    async with engines["main"].connect() as connection:
        email = await connection.scalar(select(User.email).where(User.username == "cli-user"))
    assert email == "cli@example.com"


async def test_create_user_refuses_a_taken_username(settings: Settings, cleanup: list[str]) -> None:
    cleanup.append("cli-twice")
    await run(["create-user", "one@example.com", "cli-twice"], settings)

    with pytest.raises(CommandError, match="is taken"):
        await run(["create-user", "two@example.com", "cli-twice"], settings)


async def test_create_user_validates_like_the_api(settings: Settings) -> None:
    with pytest.raises(CommandError, match="email"):
        await run(["create-user", "not-an-address", "someone"], settings)


def test_purge_notes_runs_as_a_module(database_urls: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.ops.cli", "purge-notes", "--older-than-days", "7"],
        cwd=PROJECT,
        env={**os.environ, "DATABASE_URL": database_urls["main"], "SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "purged 0 notes deleted more than 7 days ago"
