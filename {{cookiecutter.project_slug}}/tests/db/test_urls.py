"""Sync-driver URLs are translated to async drivers; bad URLs get one clear error."""

import pytest

from app.db import to_async_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgres://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        ("sqlite:///./app.db", "sqlite+aiosqlite:///./app.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("mysql://root@db/app", "mysql+aiomysql://root@db/app"),
        ("mysql+pymysql://root@db/app", "mysql+aiomysql://root@db/app"),
        ("mariadb://root@db/app", "mariadb+aiomysql://root@db/app"),
    ],
)
def test_sync_urls_get_async_drivers(url: str, expected: str) -> None:
    assert to_async_url(url).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "is not a database URL"),
        ("oracle://scott:tiger@db/app", "unsupported database 'oracle'"),
    ],
)
def test_bad_urls_raise_one_error_with_an_example(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        to_async_url(url)
    assert "postgresql://user:password@localhost:5432/app" in str(caught.value)
    assert "tiger" not in str(caught.value)


def test_unparsable_url_has_its_password_masked() -> None:
    with pytest.raises(ValueError, match="is not a database URL") as caught:
        to_async_url("postgresql//admin:hunter2@db/app")
    assert "hunter2" not in str(caught.value)


def test_middleware_reports_a_bad_url_at_once() -> None:
    from app.db import SQLAlchemyMiddleware

    with pytest.raises(ValueError, match="unsupported database 'oracle'"):
        SQLAlchemyMiddleware(app=None, db_url="oracle://scott:tiger@db/app")  # type: ignore[arg-type]
