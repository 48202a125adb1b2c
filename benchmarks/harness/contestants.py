"""The contestants, the endpoints they serve and the requests that measure them."""

import dataclasses
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import LIST_SIZE, PEER_PACKAGE, PEER_VERSION, POOL_SIZE
from .database import SERVICE_USERS, service_seed, service_user_id, sqlalchemy_url

__all__ = [
    "BASELINE",
    "BASELINE_AGAIN",
    "BENCHMARKS",
    "COUNTERPART",
    "ENDPOINTS",
    "PEER",
    "SERVICE",
    "SERVICE_PGBOUNCER",
    "SERVICE_PRE_PING",
    "SERVICE_TRACED",
    "SESSION_LAYER",
    "Contestant",
    "Route",
    "contestants",
    "scale_service",
    "service_reads",
]

BENCHMARKS = Path(__file__).resolve().parent.parent
APPS = BENCHMARKS / "apps"

# Keys and titles of the measured endpoints, in the order they are run and reported.
ENDPOINTS = {
    "no-db": "no database",
    "read": "read one row by primary key",
    # The service's read again, on the path its docs recommend for hot reads (Core
    # statements returning mappings); the others have no such route.
    "fast-read": "read one row, fast path",
    "list": f"list {LIST_SIZE} rows",
    "insert": "insert with commit",
    # The service's insert writes a user and its welcome note; the baseline writes the same
    # two rows into the same tables, built in its database by the service's migrations, so
    # the two compare equal work.
    "insert-pair": "insert a user and its note with commit",
}
# An endpoint only some contestants serve is compared with the baseline's counterpart.
COUNTERPART = {"fast-read": "read"}

# The keys the report and the targets refer to.
SESSION_LAYER = "app-db"
SERVICE = "service"
# The service with `pool_pre_ping` (DATABASE_POOL_PRE_PING=true): what a round trip per
# checkout costs over the default, the free check of a connection the server closed.
SERVICE_PRE_PING = "service-pre-ping"
# The service with OpenTelemetry on (OTEL_ENABLED): a span per request and statement.
SERVICE_TRACED = "service-traced"
# The service through PgBouncer in transaction mode (DATABASE_POOLER=pgbouncer), which
# the harness starts with the service's pool size as its own.
SERVICE_PGBOUNCER = "service-pgbouncer"
BASELINE = "baseline"
BASELINE_AGAIN = "baseline-again"
PEER = "peer"


@dataclass(frozen=True)
class Route:
    """One HTTP request and the answer it must get.

    In the body, `{tag}` becomes a token unique to each wrk run or check, and `{n}` a
    counter per request (report.lua), so that inserts never hit a unique constraint.
    """

    method: str
    path: str
    body: str | None = None
    status: int = 200
    # For a list: how many items the JSON array must hold, and, when the answer is
    # an object (a page), the key of that array in it.
    length: int | None = None
    items: str | None = None

    def tagged_body(self) -> str | None:
        """The body with a fresh `{tag}`."""
        return self.body.replace("{tag}", uuid.uuid4().hex[:8]) if self.body else None


@dataclass(frozen=True)
class Contestant:
    """A server under test: a uvicorn target and the routes it serves per endpoint."""

    key: str
    title: str
    target: str
    routes: dict[str, Route]
    app_dir: Path = APPS
    factory: bool = False
    # Extra directories for the server's sys.path, and extra environment.
    path: tuple[Path, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # The exports the memory check streams, by format ("ndjson", "csv"), when it has them.
    exports: dict[str, Route] = field(default_factory=dict)
    # A database of its own (a libpq URL), dropped and created empty on every run,
    # then built by `setup` (arguments to the venv's python, run in `app_dir`) and
    # filled by the SQL statements of `seed`.
    database: str | None = None
    setup: tuple[str, ...] = ()
    seed: tuple[str, ...] = ()


_NEW_ITEM = '{"name": "new-{tag}-{n}", "value": 7}'


def _shared_routes(rows: int) -> dict[str, Route]:
    return {
        "no-db": Route("GET", "/ping"),
        # A row from the middle of the seeded table.
        "read": Route("GET", f"/items/{rows // 2 + 1}"),
        "list": Route("GET", "/items", length=LIST_SIZE),
        "insert": Route("POST", "/items", body=_NEW_ITEM, status=201),
    }


def _baseline_routes(rows: int) -> dict[str, Route]:
    new_user = '{"email": "base-{tag}-{n}@example.com", "username": "base-{tag}-{n}"}'
    return {
        **_shared_routes(rows),
        "insert-pair": Route("POST", "/users", body=new_user, status=201),
    }


_SERVICE_EXPORTS = {
    "ndjson": Route("GET", "/export/notes"),
    "csv": Route("GET", "/export/notes?format=csv"),
}


def service_reads(users: int) -> dict[str, Route]:
    """The service's read, fast read and list on a table of `users` seeded users."""
    middle = service_user_id(users // 2 + 1)
    return {
        "read": Route("GET", f"/users/{middle}"),
        # Same schema and rules as /users/{id}, through Core mappings.
        "fast-read": Route("GET", f"/profiles/{middle}"),
        # A page object: the first LIST_SIZE users by creation time, in `items`.
        "list": Route("GET", f"/users?limit={LIST_SIZE}", length=LIST_SIZE, items="items"),
    }


def _service_routes() -> dict[str, Route]:
    """The baked service's own example endpoints, on the rows `database.service_seed` writes."""
    # Both fields are unique in the service's tables.
    created = '{"email": "bench-{tag}-{n}@example.com", "username": "bench-{tag}-{n}"}'
    return {
        "no-db": Route("GET", "/health/live"),
        **service_reads(SERVICE_USERS),
        # A user and its welcome note, in one transaction: the baseline's insert-pair.
        "insert-pair": Route("POST", "/users", body=created, status=201),
    }


def scale_service(project: Path, dsn: str, *, users: int) -> Contestant:
    """The service on the scale benchmark's database, holding `users` users and no notes."""
    service = _service(SERVICE, "baked service", project, dsn, rows=0)
    return replace(service, routes={"no-db": service.routes["no-db"], **service_reads(users)})


def _service(
    key: str, title: str, project: Path, dsn: str, *, rows: int, pre_ping: bool = False
) -> Contestant:
    """The baked service on a database of its own; only the default one streams its export."""
    return Contestant(
        key,
        title,
        "app.main:create_app",
        _service_routes(),
        app_dir=project,
        factory=True,
        env={
            "DATABASE_URL": sqlalchemy_url(dsn),
            "DATABASE_POOL_SIZE": str(POOL_SIZE),
            "DATABASE_MAX_OVERFLOW": "0",
            "DATABASE_POOL_PRE_PING": str(pre_ping).lower(),
        },
        exports={} if pre_ping else _SERVICE_EXPORTS,
        database=dsn,
        setup=("-m", "app.ops.migrate", "upgrade"),
        seed=service_seed(users=SERVICE_USERS, notes=rows),
    )


def _traced(service: Contestant) -> Contestant:
    """`service` with every request and statement traced, on the service's database.

    Every span is recorded and then dropped (OTEL_TRACES_EXPORTER=none): the figures are
    what tracing costs the request itself. Exporting adds the batch processor's work in a
    thread of each worker, and no collector runs here to receive it.
    """
    env = {**service.env, "OTEL_ENABLED": "true", "OTEL_TRACES_EXPORTER": "none"}
    # The export's memory is the untraced service's to show.
    return dataclasses.replace(service, env=env, exports={})


def _through_pgbouncer(service: Contestant, pooled_dsn: str) -> Contestant:
    """`service` on the same database, reached through the PgBouncer at `pooled_dsn`.

    Its migrations go to the server itself (DATABASE_DIRECT_URL); the export's memory
    is the direct service's to show.
    """
    env = {
        **service.env,
        "DATABASE_URL": sqlalchemy_url(pooled_dsn),
        "DATABASE_POOLER": "pgbouncer",
        "DATABASE_DIRECT_URL": service.env["DATABASE_URL"],
    }
    return dataclasses.replace(service, env=env, exports={})


def contestants(
    project: Path, service_dsn: str, *, rows: int, pooled_dsn: str | None = None
) -> list[Contestant]:
    """The contestants, in the report's order, for a service baked into `project`.

    The apps in `apps/` serve `rows` seeded items. The service gets a database of its
    own (`service_dsn`), built by its own migrations (it is not ready on one that is
    not up to date) and seeded with `rows` notes, which its export streams; the same
    service without pool pre-ping shares it, and so does the service through the
    PgBouncer at `pooled_dsn`, when there is one.
    """
    shared = _shared_routes(rows)
    pooled = _service(
        SERVICE_PGBOUNCER, "baked service, PgBouncer", project, service_dsn, rows=rows
    )
    return [
        Contestant(
            SESSION_LAYER,
            "app/db layer",
            "session_layer:app",
            shared,
            path=(project,),
            exports={"ndjson": Route("GET", "/export")},
        ),
        _service(SERVICE, "baked service", project, service_dsn, rows=rows),
        _traced(_service(SERVICE_TRACED, "baked service, traced", project, service_dsn, rows=rows)),
        # On the service's database: the list reads by index, so the other's inserts
        # do not change its cost, and a second million users would double the seeding.
        _service(
            SERVICE_PRE_PING,
            "baked service, pre-ping",
            project,
            service_dsn,
            rows=rows,
            pre_ping=True,
        ),
        *([_through_pgbouncer(pooled, pooled_dsn)] if pooled_dsn else []),
        *(
            # The baseline's app in a second server: the ratios between two servers of the
            # same code are the noise floor under every other comparison.
            Contestant(key, title, "baseline:app", _baseline_routes(rows))
            for key, title in (
                (BASELINE, "Depends (baseline)"),
                (BASELINE_AGAIN, "Depends, second server"),
            )
        ),
        Contestant(PEER, f"{PEER_PACKAGE} {PEER_VERSION}", "peer:app", shared),
        Contestant("asyncpg", "raw asyncpg", "raw_asyncpg:app", shared),
    ]
