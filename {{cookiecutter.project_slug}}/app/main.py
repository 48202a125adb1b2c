"""The application factory: builds the FastAPI app and owns its lifespan."""

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.api.openapi import document_errors
from app.api.routers import ROUTERS
from app.api.routes.health import LIVENESS_PATH
{%- if cookiecutter.second_database == "yes" %}
from app.audit import AuditMiddleware
{%- endif %}
from app.databases import create_database_engine, create_replica
from app.db import SQLAlchemyMiddleware
from app.jobs.after_commit import install_listeners, wait_for_after_commit_jobs
{%- if cookiecutter.include_example_api == "yes" %}
from app.jobs.purge import running_jobs
{%- endif %}
from app.observability.logs import configure_logging
from app.observability.requests import RequestContextMiddleware, count_statements
from app.ops.budget import budgeted_engines, log_connection_budgets
from app.ops.readiness import Readiness
from app.settings import Settings, get_settings
from app.web.body_limit import BodyLimitMiddleware
from app.web.errors import UnhandledErrorMiddleware, install_error_handlers

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
    engines = {name: create_database_engine(url, settings) for name, (_, url) in databases.items()}
    replica = create_replica(settings)
    readiness = Readiness(engines, deadline=settings.health_check_timeout, replica=replica)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as cleanup:
            for engine in engines.values():
                cleanup.push_async_callback(engine.dispose)
            if replica is not None:
                cleanup.push_async_callback(replica.dispose)
                replica.start_monitoring()
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
        # Tracing is app/observability/tracing.py's, behind OTEL_ENABLED. FastAPI's own
        # telemetry would otherwise ask the global OpenTelemetry providers on every
        # request whether it is on.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engines = engines
    app.state.readiness = readiness
    app.state.replica = replica
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    document_errors(app)
    # Innermost, so that the session middlewares see its 413 and roll back.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_request_body_bytes)
    # The last middleware added is the outermost, and the innermost commits first: the
    # main database's goes last, so any other database commits before it.
    for name, (middleware, _) in reversed(databases.items()):
        options = dict((session_args or {}).get(name, {}))
        if name == "main" and replica is not None:
            # The main database's sessions send their safe reads to the replica.
            options = {**replica.session_args(), **options}
        app.add_middleware(
            middleware,
            custom_engine=engines[name],
            session_args=options,
            commit_on_exit=True,
            # The liveness probe touches no database, and answers whatever state it is in.
            exclude_paths=[LIVENESS_PATH],
        )
        if settings.debug:
            count_statements(engines[name])
    app.add_middleware(UnhandledErrorMiddleware)  # inside the request id, outside the sessions
    app.add_middleware(RequestContextMiddleware, log_statements=settings.debug)
    if settings.otel_enabled:
        # Imported only here: the tracing packages are an optional extra. Last, so that
        # the request's span encloses every middleware; it removes itself at shutdown.
        from app.observability.tracing import instrument

        instrument(app)
    return app
