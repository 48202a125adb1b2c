"""The production server's pieces: its options, the connection budget, and the drain.

tests/ of the template run `python -m app.ops.serve` itself, with real worker processes:
a rolling restart under load, and the budget check with several workers.
"""

import logging
import os
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.ops.budget import ConnectionBudget, budgeted_engines, connection_budgets
from app.ops.serve import ServerOptions, ServerOptionsError
from app.settings import Settings
from tests.api.test_health import unreachable_url
from tests.conftest import serve
from tests.pools import CHECKS_THE_POOLS_BUDGET


def test_the_server_options_have_defaults_for_a_single_machine() -> None:
    options = ServerOptions.from_environment({})

    assert (options.host, options.port, options.graceful_timeout) == ("127.0.0.1", 8000, 10)
    assert options.drain_delay == 5
    assert options.workers >= 1


def test_the_server_options_are_read_from_the_environment() -> None:
    environ = {
        "HOST": "0.0.0.0",
        "PORT": "9000",
        "WEB_CONCURRENCY": "3",
        "GRACEFUL_TIMEOUT": "0",
        "DRAIN_DELAY": "0.5",
    }

    assert ServerOptions.from_environment(environ) == ServerOptions("0.0.0.0", 9000, 3, 0, 0.5)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "http", "PORT='http' is not valid: it must be a whole number from 1 to 65535"),
        ("PORT", "70000", "PORT='70000' is not valid: it must be a whole number from 1 to 65535"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY='0' is not valid: it must be a whole number "),
        ("GRACEFUL_TIMEOUT", "2.5", "GRACEFUL_TIMEOUT='2.5' is not valid: it must be a whole "),
        ("DRAIN_DELAY", "-1", "DRAIN_DELAY='-1' is not valid: it must be seconds, 0 or more"),
        ("DRAIN_DELAY", "nan", "DRAIN_DELAY='nan' is not valid: it must be seconds, 0 or more"),
        ("HOST", " ", "HOST is empty: set it to an address such as 0.0.0.0"),
    ],
)
def test_a_bad_server_option_is_one_message_naming_it(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ServerOptionsError) as raised:
        ServerOptions.from_environment({variable: value})

    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_budget_fits_when_every_worker_s_pool_fits_in_what_the_server_allows() -> None:
    fits = ConnectionBudget("main", 6, 15, 100, 3, 5)
    over = ConnectionBudget("main", 7, 15, 100, 3, 5)

    assert (fits.needed, fits.available, fits.fits) == (90, 92, True)
    assert (over.needed, over.available, over.fits) == (105, 92, False)
    assert over.describe() == (
        "database main: 7 workers x 15 connections = 105, of the 92 the server allows "
        "(max_connections 100 - 3 reserved for superusers - 5 DATABASE_RESERVED_CONNECTIONS)"
    )
    assert over.problem().startswith("the connection budget does not fit: database main: ")
    assert "Lower WEB_CONCURRENCY (or DATABASE_TOTAL_WORKERS)" in over.problem()


@pytest.mark.direct_connection(CHECKS_THE_POOLS_BUDGET)
async def test_the_budget_counts_every_worker_and_asks_the_server_its_limits(
    make_live_app: Callable[..., FastAPI], backend: str
) -> None:
    app = make_live_app(
        web_concurrency=3,
        database_total_workers=12,
        database_pool_size=2,
        database_max_overflow=1,
        database_reserved_connections=4,
    )
    settings: Settings = app.state.settings
    engines: dict[str, AsyncEngine] = app.state.engines
    try:
        budgets = await connection_budgets(engines, settings)
        server_limits = {
            name: await _server_max_connections(engine) for name, engine in engines.items()
        }
    finally:
        for engine in engines.values():
            await engine.dispose()

    if backend == "sqlite":
        assert budgets == {}  # an SQLite file has no server and no limit
        return
    for name, budget in budgets.items():
        assert isinstance(budget, ConnectionBudget)
        assert (budget.workers, budget.per_worker, budget.needed) == (12, 3, 36)
        assert budget.max_connections == server_limits[name]
        assert budget.reserved_by_settings == 4


@pytest.mark.direct_connection(CHECKS_THE_POOLS_BUDGET)
async def test_a_read_replica_has_a_budget_of_its_own(
    make_live_app: Callable[..., FastAPI], database_urls: dict[str, str], backend: str
) -> None:
    if backend != "postgresql":
        app = make_live_app()
        assert budgeted_engines(app) == app.state.engines  # replicas are PostgreSQL's
        return
    # The primary stands in for its replica: the budget only asks it for its limits.
    app = make_live_app(database_replica_url=database_urls["main"])
    engines = budgeted_engines(app)
    try:
        budgets = await connection_budgets(engines, app.state.settings)
    finally:
        for engine in engines.values():
            await engine.dispose()

    assert set(engines) == {*app.state.engines, "main replica"}
    replica = budgets["main replica"]
    assert isinstance(replica, ConnectionBudget)
    assert replica.describe().startswith("database main replica: 1 worker x 15 connections")


@pytest.mark.direct_connection(CHECKS_THE_POOLS_BUDGET)
async def test_a_database_that_is_down_leaves_its_budget_unchecked(
    make_live_app: Callable[..., FastAPI], database_urls: dict[str, str], backend: str
) -> None:
    app = make_live_app(database_url=unreachable_url(database_urls["main"]))
    try:
        budgets = await connection_budgets(app.state.engines, app.state.settings)
    finally:
        for engine in app.state.engines.values():
            await engine.dispose()

    if backend == "sqlite":
        assert "main" not in budgets  # nothing to check, up or down
    else:
        assert str(budgets["main"]).startswith("unreachable (")


@pytest.mark.direct_connection(CHECKS_THE_POOLS_BUDGET)
async def test_each_worker_logs_its_budget_when_it_starts(
    make_live_app: Callable[..., FastAPI], backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_live_app(web_concurrency=2)
    with caplog.at_level(logging.INFO, logger="app.ops.budget"):
        async with serve(app):
            pass

    lines = [record.getMessage() for record in caplog.records if record.name == "app.ops.budget"]
    if backend == "sqlite":
        assert lines == []
        return
    assert len(lines) == len(app.state.engines)
    for line in lines:
        assert line.startswith(f"worker {os.getpid()}: connection budget of database ")
        assert " 2 workers x 15 connections = 30, of the " in line


async def test_a_draining_process_is_not_ready_but_still_serves(
    make_live_app: Callable[..., FastAPI],
) -> None:
    app = make_live_app()
    async with serve(app) as client:
        before = await client.get("/health/ready")
        app.state.readiness.drain()
        during = await client.get("/health/ready")
        live = await client.get("/health/live")

    assert before.status_code == 200
    assert during.status_code == 503
    assert during.json() == {
        "status": "stopping",
        "reason": "shutting down: finishing the requests in flight",
    }
    assert live.status_code == 200


async def _server_max_connections(engine: AsyncEngine) -> int | None:
    if engine.dialect.name == "sqlite":
        return None
    if engine.dialect.name == "postgresql":
        query = "SHOW max_connections"
    else:
        query = "SELECT @@max_connections"
    async with engine.connect() as connection:
        return int((await connection.execute(text(query))).scalar_one())
