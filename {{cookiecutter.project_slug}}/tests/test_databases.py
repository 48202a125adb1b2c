"""DATABASE_POOLER=pgbouncer: engines fit for PgBouncer in transaction mode, migrations bypass it.

The template's own tests run this whole suite through a real PgBouncer in transaction
mode, with DATABASE_POOLER=pgbouncer; these tests pin down what the setting changes.
"""

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from app.ops.migrate import alembic_config, databases
from app.ops.migrate import main as migrate_cli
from app.settings import Settings, SettingsError, get_settings
from tests.api.test_health import SECRET_PASSWORD, unreachable_url

UNIQUE_NAME = re.compile(r"__asyncpg_[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}__")


@pytest.mark.parametrize(
    ("url", "driver"),
    [("sqlite:///./app.db", "sqlite+aiosqlite"), ("mysql://app@db/app", "mysql+aiomysql")],
)
def test_a_pooler_in_front_of_anything_but_postgresql_is_one_clear_configuration_error(
    url: str, driver: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(secret_key="test-secret", database_url=url, database_pooler="pgbouncer")

    message = str(SettingsError.from_validation_error(raised.value))
    assert "DATABASE_POOLER" in message
    assert f"DATABASE_URL is {driver}" in message
    assert "\n" not in message


def test_a_pooler_the_service_does_not_know_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(
            secret_key="test-secret",
            database_url="postgresql://app@db/app",
            database_pooler="pgpool",
        )

    assert "DATABASE_POOLER" in str(SettingsError.from_validation_error(raised.value))


@pytest.mark.postgresql
async def test_behind_pgbouncer_the_engines_keep_no_pool_and_no_statement_for_later(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(database_pooler="pgbouncer")
    for engine in app.state.engines.values():
        try:
            assert isinstance(engine.pool, NullPool)
            async with engine.connect() as connection:
                for _ in range(3):  # the same statement, prepared anew each time, never cached
                    await connection.execute(text("SELECT 1"))
                prepared = text("SELECT name FROM pg_prepared_statements")
                names = (await connection.scalars(prepared)).all()
        finally:
            await engine.dispose()

        # asyncpg closes each statement once SQLAlchemy drops it: only the last is left.
        assert names
        assert all(UNIQUE_NAME.fullmatch(name) for name in names), names


@pytest.mark.postgresql
async def test_behind_pgbouncer_every_transaction_sets_the_time_limits_for_itself(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app(
        database_pooler="pgbouncer",
        database_statement_timeout=12.5,
        database_idle_in_transaction_timeout=3,
    )
    limits = text(
        "SELECT current_setting('statement_timeout'),"
        " current_setting('idle_in_transaction_session_timeout')"
    )
    for engine in app.state.engines.values():
        try:
            for _ in range(2):  # each transaction, on whichever server connection it gets
                async with engine.begin() as connection:
                    assert tuple((await connection.execute(limits)).one()) == ("12500ms", "3s")
        finally:
            await engine.dispose()


@pytest.fixture
def direct_urls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Sets a database's URL to a pooler that is down and its direct URL to `url`."""

    def point(database: str, url: str) -> None:
        variable = (alembic_config(database).get_main_option("database_url_setting") or "").upper()
        monkeypatch.setenv(variable, unreachable_url(url))
        monkeypatch.setenv(variable.removesuffix("_URL") + "_DIRECT_URL", url)
        monkeypatch.setenv("SECRET_KEY", "test-secret")
        get_settings.cache_clear()  # the command line reads the settings once per process

    yield point
    get_settings.cache_clear()


@pytest.mark.parametrize("database", databases())
async def test_migrations_run_over_the_direct_url_not_through_the_pooler(
    database_url: str,
    database: str,
    direct_urls: Callable[[str, str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    direct_urls(database, database_url)

    assert await migrate_cli(["current", "--database", database]) == 0

    out, err = capsys.readouterr()
    assert f"{database} database" in out
    assert "at base (nothing migrated)" in out
    assert err == ""
    assert SECRET_PASSWORD not in out
