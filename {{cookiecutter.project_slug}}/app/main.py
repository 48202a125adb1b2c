"""The application factory: builds the FastAPI app and owns its lifespan."""

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import URL

from app.api.openapi import document_errors
from app.api.routes import routers
from app.api.routing import include_routers
{%- if cookiecutter.second_database == "yes" %}
from app.audit import AuditMiddleware
{%- endif %}
from app.body_limit import BodyLimitMiddleware
from app.budget import budgeted_engines, log_connection_budgets
from app.db import Replica, SQLAlchemyMiddleware, create_engine, to_async_url
from app.errors import UnhandledErrorMiddleware, install_error_handlers
from app.events import install_listeners, wait_for_after_commit_jobs
{%- if cookiecutter.include_example_api == "yes" %}
from app.jobs import running_jobs
{%- endif %}
from app.observability import RequestContextMiddleware, configure_logging, count_statements
from app.pooler import pgbouncer_engine_args, set_limits_per_transaction
from app.readiness import Readiness
from app.settings import Settings, get_settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, session_args: Mapping[str, dict[str, Any]] | None = None
) -> FastAPI:
    """Build the app; tests pass their own `settings`, servers read the environment.

    `session_args` adds session options per database ("main", "audit"); the test suite
    uses it to run every session inside the test's own transaction.
    """
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    # Each database: its middleware class and URL, named as in alembic.ini.
    databases: dict[str, tuple[type[SQLAlchemyMiddleware], str]] = {
        "main": (SQLAlchemyMiddleware, settings.database_url),
{%- if cookiecutter.second_database == "yes" %}
        "audit": (AuditMiddleware, settings.audit_database_url),
{%- endif %}
    }
    # Created here, but they connect only on first use; the lifespan disposes them.
    engines = {
        name: create_engine(url, _engine_args(url, settings))
        for name, (_, url) in databases.items()
    }
    if settings.database_pooler == "pgbouncer":
        for engine in engines.values():
            set_limits_per_transaction(engine, _limits(settings))
    replica = _replica(settings)
    readiness = Readiness(engines, deadline=settings.health_check_timeout, replica=replica)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as cleanup:
            for engine in engines.values():
                cleanup.push_async_callback(engine.dispose)
            for name, engine in engines.items():
                shown = engine.url.render_as_string(hide_password=True)
                logger.info("database %s: %s", name, shown)
            # A database that is down, behind or ahead is logged and left to /health/ready
            # to report: the service starts anyway and is ready once the database is.
            await readiness.check()
            await log_connection_budgets(budgeted_engines(app), settings)
            install_listeners()
            cleanup.push_async_callback(wait_for_after_commit_jobs)
{%- if cookiecutter.include_example_api == "yes" %}
            await cleanup.enter_async_context(running_jobs(app))
{%- endif %}
            yield
        logger.info("stopped")

    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        description="{{ cookiecutter.description }}",
        lifespan=lifespan,
        # Tracing is app/tracing.py's, behind OTEL_ENABLED. FastAPI's own telemetry would
        # otherwise ask the global OpenTelemetry providers on every request whether it is on.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engines = engines
    app.state.readiness = readiness
    app.state.replica = replica
    include_routers(app, routers())
    install_error_handlers(app)
    document_errors(app)
    # Innermost, so that the session middlewares see its 413 and roll back.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_request_body_bytes)
    # The last middleware added is the outermost, and the innermost commits first: the
    # main database's goes last, so any other database commits before it.
    for name, (middleware, _) in reversed(databases.items()):
        app.add_middleware(
            middleware,
            custom_engine=engines[name],
            session_args=(session_args or {}).get(name),
            commit_on_exit=True,
            # The middleware of the main database routes its reads and checks the replica.
            replica=replica if name == "main" else None,
        )
        if settings.debug:
            count_statements(engines[name])
    app.add_middleware(UnhandledErrorMiddleware)  # inside the request id, outside the sessions
    app.add_middleware(RequestContextMiddleware, log_statements=settings.debug)
    if settings.otel_enabled:
        # Imported only here: the tracing packages are an optional extra. Last, so that
        # the request's span encloses every middleware; it removes itself at shutdown.
        from app.tracing import instrument

        instrument(app)
    return app


def _replica(settings: Settings) -> Replica | None:
    """The read replica of the main database, when DATABASE_REPLICA_URL names one."""
    url = settings.database_replica_url
    if url is None:
        return None
    args = _engine_args(url, settings)
    if to_async_url(url).get_driver_name() == "asyncpg":
        # A replica that cannot be reached must not hold a read for asyncpg's default
        # minute before the read falls back to the primary.
        connect_args = args.get("connect_args", {})
        args["connect_args"] = {"timeout": settings.health_check_timeout, **connect_args}
    # Its middleware checks it while the lifespan runs, and disposes its engine.
    return Replica(
        url,
        engine_args=args,
        max_lag=settings.database_replica_max_lag,
        check_timeout=settings.health_check_timeout,
    )


def _engine_args(url: str, settings: Settings) -> dict[str, Any]:
    parsed = to_async_url(url)  # names a bad URL clearly before anything else reads it
    # Errors and their log lines show a failed statement's SQL, never its values: users' data.
    hidden = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        return hidden  # an in-memory SQLite database has exactly one connection, no pool to size
    if settings.database_pooler == "pgbouncer":
        # PgBouncer pools the connections and refuses the limits as connect arguments;
        # create_app sets them on each transaction instead.
        return {**hidden, **pgbouncer_engine_args()}
    return {
        **hidden,
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_timeout": settings.database_pool_timeout,
        "pool_pre_ping": settings.database_pool_pre_ping,
        "connect_args": _server_limits(parsed, settings),
    }


def _server_limits(url: URL, settings: Settings) -> dict[str, Any]:
    """Connect arguments that make a PostgreSQL server enforce the settings' time limits."""
    # MySQL and MariaDB name their limits differently (max_execution_time, which covers
    # only SELECT, against max_statement_time), MySQL has no idle-in-transaction limit,
    # and one mysql:// URL serves both: set those on the server (docs/deployment.md).
    if url.get_backend_name() != "postgresql":
        return {}
    limits = _limits(settings)
    if url.get_driver_name() == "asyncpg":
        return {"server_settings": limits}
    return {"options": " ".join(f"-c {name}={value}" for name, value in limits.items())}


def _limits(settings: Settings) -> dict[str, str]:
    """The PostgreSQL settings that carry the service's time limits, in milliseconds."""
    return {
        "statement_timeout": _milliseconds(settings.database_statement_timeout),
        "idle_in_transaction_session_timeout": _milliseconds(
            settings.database_idle_in_transaction_timeout
        ),
    }


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))  # 0 would turn the limit off
