"""Runtime configuration, read from environment variables and the `.env` file."""

import os
import sys
from functools import lru_cache
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.db import to_async_url

__all__ = ["Settings", "SettingsError", "get_settings", "span_exporters"]


class SettingsError(Exception):
    """The configuration is invalid; the message names each bad variable and its fix."""

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> "SettingsError":
        problems = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{variable}: {error['msg']}")
        return cls(
            "Invalid configuration; fix these in the environment or in .env "
            "(see .env.example): " + "; ".join(problems)
        )


# What app/observability/tracing.py imports: the `tracing` extra of pyproject.toml.
_TRACING_PACKAGES = (
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation-fastapi",
    "opentelemetry-instrumentation-sqlalchemy",
)


# What OTEL_EXPORTER_OTLP_PROTOCOL may name, and the span exporter's entry point for each;
# the `tracing` extra installs the HTTP one, which the specification makes the default.
_OTLP_EXPORTERS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def span_exporters() -> list[EntryPoint]:
    """The installed span exporters that OTEL_TRACES_EXPORTER names; `none` names none.

    Raises ValueError naming the variable and the fix for a name that is not installed.
    """
    found: list[EntryPoint] = []
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip().lower()
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol not in _OTLP_EXPORTERS:
                raise ValueError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not an OTLP protocol; use "
                    "http/protobuf (or grpc, with opentelemetry-exporter-otlp-proto-grpc)"
                )
            name = _OTLP_EXPORTERS[protocol]
        exporters = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not exporters:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER names {name!r}, but no span exporter of that name is "
                "installed; use otlp, console or none, or install the package that provides it"
            )
        found.extend(exporters)
    return found


def _installed(distribution: str) -> bool:
    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


# The URLs that DATABASE_POOLER applies to.
{%- if cookiecutter.second_database == "yes" %}
_POOLED_URLS = ("database_url", "audit_database_url")
{%- else %}
_POOLED_URLS = ("database_url",)
{%- endif %}


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./{{ cookiecutter.project_slug }}.db"
{%- if cookiecutter.second_database == "yes" %}
    audit_database_url: str = "sqlite+aiosqlite:///./{{ cookiecutter.project_slug }}-audit.db"
{%- endif %}
    # Set to "pgbouncer" when the URLs above lead to PgBouncer in transaction mode: the
    # engines then keep no pool and no prepared statements of their own, and set the
    # time limits below per transaction (docs/deployment.md, "PgBouncer").
    database_pooler: Literal["none", "pgbouncer"] = "none"
    # The server itself, bypassing the pooler, for migrations; unset, they use the URL above.
    database_direct_url: str | None = None
{%- if cookiecutter.second_database == "yes" %}
    audit_database_direct_url: str | None = None
{%- endif %}
    secret_key: SecretStr
    # Logs more (the SQL statement count of each request); never sends internals to a client.
    debug: bool = False
    # Python logging level name; DEBUG also logs the SQL statement count of each request.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Each database's connection pool: `pool_size` connections are kept open, up to
    # `max_overflow` more are opened under load, and a request that finds all of them
    # busy for `pool_timeout` seconds gets 503 with Retry-After instead of hanging.
    database_pool_size: int = Field(default=5, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_pool_timeout: float = Field(default=10.0, gt=0)
    # A pooled connection that the server closed (a restart, a failover, a killed
    # backend) is replaced at checkout. On PostgreSQL that costs no round trip, so
    # pre-ping is off unless set: it tests each connection with one, which finds those
    # that died silently too (a vanished host, a firewall that dropped them), at that
    # round trip per checkout (docs/performance.md has the figures). MySQL's driver tells
    # nothing of a closed socket, so there pre-ping is on unless set to false.
    database_pool_pre_ping: bool | None = None
    # A PostgreSQL streaming replica of DATABASE_URL for the reads that are safe there
    # (docs/deployment.md, "Read replicas"); unset, every statement uses DATABASE_URL.
    # Reads use the primary while the replica is down or more than `max_lag` seconds behind.
    database_replica_url: str | None = None
    database_replica_max_lag: float = Field(default=5.0, gt=0)
    # The connection budget (app/ops/budget.py): `web_concurrency` is this machine's number of
    # worker processes, which `python -m app.ops.serve` sets (one per CPU unless told); the
    # workers of every machine together, `total_workers` (unset: this machine's), must
    # fit their pools in each server's max_connections, less `reserved_connections` kept
    # for migrations, operators and other clients.
    web_concurrency: int = Field(default=1, ge=1)
    database_total_workers: int | None = Field(default=None, ge=1)
    database_reserved_connections: int = Field(default=5, ge=0)
    # Limits the PostgreSQL server enforces on every connection of the app, so that not
    # even a bug can pin a backend: a statement running longer than `statement_timeout`
    # seconds is cancelled, and a session left idle inside a transaction for
    # `idle_in_transaction_timeout` seconds is ended. Migrations are not limited.
    database_statement_timeout: float = Field(default=30.0, gt=0)
    database_idle_in_transaction_timeout: float = Field(default=10.0, gt=0)
{%- if cookiecutter.include_example_api == "yes" %}
    # How many connections one request may hold at once for concurrent queries (the
    # example's /stats); keep it well below the pool size.
    database_max_concurrent_queries: int = Field(default=3, ge=1)
    # The export ends a stream whose client takes no data for this many seconds.
    export_send_timeout: float = Field(default=10.0, gt=0)
    # Seconds between two purges of long-deleted notes, once across all the processes.
    purge_interval: float = Field(default=3600.0, gt=0)
{%- endif %}
    # How long /health/ready waits for each database before reporting it down.
    health_check_timeout: float = Field(default=2.0, gt=0)
    # A request body larger than this many bytes gets 413 before it is read in full.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # Traces every request and SQL statement with OpenTelemetry
    # (app/observability/tracing.py), set up by the standard OTEL_* variables; needs the
    # project's `tracing` extra.
    otel_enabled: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, level: object) -> object:
        # LOG_LEVEL=warning means what it says; logging itself knows the names in capitals.
        return level.strip().upper() if isinstance(level, str) else level

    @field_validator("otel_enabled")
    @classmethod
    def _tracing_installed(cls, enabled: bool) -> bool:
        if not enabled:
            return enabled
        missing = [name for name in _TRACING_PACKAGES if not _installed(name)]
        if missing:
            raise ValueError(
                f"tracing needs {', '.join(missing)}, which are not installed: install the "
                "project with its tracing extra (pip install '.[tracing]'), or unset OTEL_ENABLED"
            )
        span_exporters()  # the OTEL_* variables are checked here, before any worker starts
        return enabled

    @field_validator("database_replica_url")
    @classmethod
    def _replica_on_postgresql(cls, url: str | None) -> str | None:
        if not url:
            return None  # an empty variable turns the replica off, like an unset one
        backend = to_async_url(url).get_backend_name()
        if backend != "postgresql":
            raise ValueError(
                f"read replicas are supported on PostgreSQL only, not {backend}: give a "
                "postgresql:// URL, or leave it unset"
            )
        return url

    @field_validator("database_pooler")
    @classmethod
    def _pooler_needs_asyncpg(cls, pooler: str, info: ValidationInfo) -> str:
        if pooler == "none":
            return pooler
        for field in _POOLED_URLS:
            url = info.data.get(field)
            if not isinstance(url, str):
                continue  # missing or invalid: that field's own error says so
            try:
                driver = to_async_url(url).drivername
            except ValueError:
                continue  # a bad URL is named when the engine is made
            if driver != "postgresql+asyncpg":
                raise ValueError(
                    f"{pooler} pools PostgreSQL connections, but {field.upper()} is {driver}; "
                    "point it at PgBouncer with a postgresql:// URL, or unset DATABASE_POOLER"
                )
        return pooler


@lru_cache
def get_settings() -> Settings:
    """Read the settings once per process, turning validation errors into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError.from_validation_error(exc) from None


if __name__ == "__main__":
    # `python -m app.settings` checks the configuration; `make dev` runs it first so
    # that a mistake shows up as one line instead of a server traceback.
    try:
        get_settings()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
