"""A connection that cannot be opened is a `DatabaseUnavailableError`, whatever the driver."""

import pickle

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from app.db import DatabaseUnavailableError, PoolTimeoutError, create_engine
from app.db.replica import Replica
from tests.api.test_health import SECRET_PASSWORD, unreachable_url


@pytest.mark.parametrize("engine_args", [{}, {"poolclass": NullPool}], ids=["pool", "NullPool"])
async def test_a_database_that_cannot_be_reached_is_named_with_the_fix(
    database_url: str, engine_args: dict[str, object]
) -> None:
    engine = create_engine(unreachable_url(database_url), engine_args)
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    error = caught.value
    # Code that catches SQLAlchemy's errors still does, and the driver's error is kept.
    assert isinstance(error, sqlalchemy.exc.OperationalError)
    assert not isinstance(error, PoolTimeoutError)
    assert error.orig is not None
    assert error.reason == type(error.orig).__name__
    message = str(error)
    assert message.startswith("No connection to the database could be opened")
    assert "Check that the server is running" in message
    assert SECRET_PASSWORD not in message
    # It crosses process boundaries (a job queue, a worker pool) as itself.
    assert str(pickle.loads(pickle.dumps(error))) == message


async def test_an_error_of_a_statement_keeps_its_own_type(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
                await connection.execute(text("SELECT * FROM no_such_table"))
    finally:
        await engine.dispose()
    assert not isinstance(caught.value, DatabaseUnavailableError)


@pytest.mark.postgresql
async def test_a_replica_that_cannot_be_reached_is_down_naming_the_drivers_error(
    database_url: str,
) -> None:
    replica = Replica(unreachable_url(database_url))
    try:
        state = await replica.check()
    finally:
        await replica.dispose()
    assert state == "down: unreachable (ConnectionRefusedError)"
