"""The connection budget: whether the pools of every worker fit in each database server.

Each worker process has one pool per database, which opens up to `pool_size +
max_overflow` connections. When DATABASE_TOTAL_WORKERS processes (every machine's
workers together; by default this machine's WEB_CONCURRENCY) share a database, it must
accept, at the busiest moment,

    total workers * (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW)

connections, within what the server allows: `max_connections`, less those PostgreSQL
keeps for superusers (`superuser_reserved_connections`, and `reserved_connections`
from PostgreSQL 16 on), less DATABASE_RESERVED_CONNECTIONS for everyone else
(migrations, an operator's psql, monitoring, other services). SQLite has no server and
nothing to check.

`python -m app.ops.serve` refuses to start when a database's budget does not fit; each
worker logs its budget when it starts.
"""

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db import pool_capacity
from app.ops.readiness import unreachable
from app.settings import Settings

__all__ = [
    "ConnectionBudget",
    "budgeted_engines",
    "connection_budgets",
    "log_connection_budgets",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionBudget:
    """One database's budget: what the workers may open against what the server allows."""

    database: str
    workers: int
    per_worker: int
    max_connections: int
    reserved_by_server: int
    reserved_by_settings: int

    @property
    def needed(self) -> int:
        return self.workers * self.per_worker

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved_by_server - self.reserved_by_settings

    @property
    def fits(self) -> bool:
        return self.needed <= self.available

    def describe(self) -> str:
        """The numbers in one phrase, such as a log line or an error carries."""
        return (
            f"database {self.database}: {self.workers} worker{'s' * (self.workers != 1)} "
            f"x {self.per_worker} "
            f"connections = {self.needed}, of the {self.available} the server allows "
            f"(max_connections {self.max_connections} - {self.reserved_by_server} reserved "
            f"for superusers - {self.reserved_by_settings} DATABASE_RESERVED_CONNECTIONS)"
        )

    def problem(self) -> str:
        """Why this budget does not fit, and the fixes."""
        return (
            f"the connection budget does not fit: {self.describe()}. Lower WEB_CONCURRENCY "
            "(or DATABASE_TOTAL_WORKERS), DATABASE_POOL_SIZE or DATABASE_MAX_OVERFLOW, raise "
            "the server's max_connections, or put PgBouncer in front of it"
        )


def budgeted_engines(app: FastAPI) -> dict[str, AsyncEngine]:
    """The engines whose pools count: each database's, and the main database's replica.

    A replica is a server of its own, with its own max_connections, and every worker
    keeps a pool on it too.
    """
    engines: dict[str, AsyncEngine] = dict(app.state.engines)
    if app.state.replica is not None:
        engines["main replica"] = app.state.replica.engine
    return engines


async def connection_budgets(
    engines: Mapping[str, AsyncEngine], settings: Settings
) -> dict[str, ConnectionBudget | str]:
    """Each server database's budget, or why it could not be checked; SQLite is left out.

    Each check waits at most HEALTH_CHECK_TIMEOUT for its database: one that is down
    is reported here and by /health/ready, and does not keep the service from starting.
    """
    workers = settings.database_total_workers or settings.web_concurrency
    checked = {name: engine for name, engine in engines.items() if engine.dialect.name != "sqlite"}
    results = await asyncio.gather(
        *(
            _budget(name, engine, workers, settings.database_reserved_connections, settings)
            for name, engine in checked.items()
        )
    )
    return dict(zip(checked, results, strict=True))


async def log_connection_budgets(engines: Mapping[str, AsyncEngine], settings: Settings) -> None:
    """Log each database's budget, one line each, with this process's id.

    Every worker does it when it starts, with engines of its own; `python -m app.ops.serve`
    has already refused to start when a budget does not fit, so here it is only a warning.
    """
    pid = os.getpid()
    for name, budget in (await connection_budgets(engines, settings)).items():
        if isinstance(budget, str):
            logger.info(
                "worker %d: connection budget of database %s not checked: %s", pid, name, budget
            )
        elif budget.fits:
            logger.info("worker %d: connection budget of %s", pid, budget.describe())
        else:
            logger.warning("worker %d: %s", pid, budget.problem())


async def _budget(
    name: str, engine: AsyncEngine, workers: int, reserve: int, settings: Settings
) -> ConnectionBudget | str:
    per_worker = pool_capacity(engine.pool)
    if per_worker is None:
        # Behind PgBouncer (DATABASE_POOLER) the engine keeps no pool: PgBouncer's own
        # pool size, in pgbouncer.ini, is what must fit in max_connections.
        return "no pool of its own to count (the connections are pooled elsewhere)"
    try:
        async with asyncio.timeout(settings.health_check_timeout):
            async with engine.connect() as connection:
                max_connections, reserved = await _server_limits(connection)
    except (TimeoutError, sqlalchemy.exc.TimeoutError):
        return f"no answer within {settings.health_check_timeout:g} s"
    except (OSError, sqlalchemy.exc.DBAPIError) as exc:
        return unreachable(exc)
    return ConnectionBudget(name, workers, per_worker, max_connections, reserved, reserve)


async def _server_limits(connection: AsyncConnection) -> tuple[int, int]:
    """The server's `max_connections`, and how many of them only superusers may use."""
    if connection.dialect.name == "postgresql":
        row = (
            await connection.execute(
                text(
                    "SELECT current_setting('max_connections')::int,"
                    " current_setting('superuser_reserved_connections')::int"
                    # PostgreSQL 16 adds reserved_connections; older servers answer NULL.
                    " + coalesce(current_setting('reserved_connections', true), '0')::int"
                )
            )
        ).one()
        return row[0], row[1]
    # MySQL and MariaDB let one connection past max_connections for an administrator,
    # so none of max_connections is held back.
    max_connections = (await connection.execute(text("SELECT @@max_connections"))).scalar_one()
    return int(max_connections), 0
