"""The contestants, the endpoints they serve and the requests that measure them."""

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import LIST_SIZE, POOL_SIZE
from .database import SERVICE_USERS, seed_service, service_user_id, sqlalchemy_url

__all__ = [
    "APPS",
    "BASELINE",
    "BASELINE_AGAIN",
    "BENCHMARKS",
    "ENDPOINTS",
    "PEER",
    "SERVICE",
    "SESSION_LAYER",
    "Contestant",
    "Route",
    "contestants",
]

BENCHMARKS = Path(__file__).resolve().parent.parent
APPS = BENCHMARKS / "apps"

# Keys and titles of the measured endpoints, in the order they are run and reported.
ENDPOINTS = {
    "no-db": "no database",
    "read": "read one row by primary key",
    "list": f"list {LIST_SIZE} rows",
    "insert": "insert with commit",
}


@dataclass(frozen=True)
class Route:
    """One HTTP request: `{tag}` in the body becomes a token unique to the wrk run,
    and `{n}` a counter per request, so inserts never hit a unique constraint."""

    method: str
    path: str
    body: str | None = None
    status: int = 200
    # For a list endpoint: how many items the JSON array must hold, and, when the
    # answer is an object (a page), the key of that array in it.
    length: int | None = None
    items: str | None = None


@dataclass(frozen=True)
class Contestant:
    """A server under test: a uvicorn target and the routes it serves per endpoint."""

    key: str
    title: str
    target: str
    app_dir: Path
    routes: dict[str, Route]
    factory: bool = False
    # Extra directories for the server's sys.path and extra environment.
    path: tuple[Path, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # The NDJSON export the memory benchmark streams, when the contestant has one.
    export: Route | None = None
    # A database of its own, dropped and created empty on every run, then prepared
    # by the `setup` commands (arguments to the venv's python, run in `app_dir`).
    database: str | None = None
    setup: tuple[tuple[str, ...], ...] = ()
    # Fills that database once the setup has run, given its libpq URL.
    seed: Callable[[str], None] | None = None


def _shared_routes(rows: int) -> dict[str, Route]:
    return {
        "no-db": Route("GET", "/ping"),
        # A row from the middle of the seeded table.
        "read": Route("GET", f"/items/{rows // 2 + 1}"),
        "list": Route("GET", "/items", length=LIST_SIZE),
        "insert": Route("POST", "/items", body='{"name": "new-{tag}-{n}", "value": 7}', status=201),
    }


def _service_routes() -> dict[str, Route]:
    """The baked service's own example endpoints, on the rows `database.seed_service` writes."""
    # The service sets its own rules for e-mails and usernames, and both are unique:
    # the run's tag and the request counter keep every insert new.
    created = '{"email": "bench-{tag}-{n}@example.com", "username": "bench-{tag}-{n}"}'
    return {
        "no-db": Route("GET", "/health/live"),
        "read": Route("GET", f"/users/{service_user_id(SERVICE_USERS // 2 + 1)}"),
        # A page object: the first LIST_SIZE users by creation time, with the total count.
        "list": Route("GET", f"/users?limit={LIST_SIZE}", length=LIST_SIZE, items="items"),
        # Also queues the service's welcome note, a second transaction after the response.
        "insert": Route("POST", "/users", body=created, status=201),
    }


SESSION_LAYER = "app-db"
SERVICE = "service"
BASELINE = "baseline"
BASELINE_AGAIN = "baseline-again"
PEER = "peer"


def contestants(project: Path, service_dsn: str, *, rows: int) -> list[Contestant]:
    """The six contestants, for a service baked into `project` and `rows` seeded items.

    The service gets a database of its own (`service_dsn`, a libpq URL), built by its
    own migrations (it refuses to start on a database that is not up to date), then
    seeded with `rows` notes, which its export streams, and the users who wrote them.
    """
    shared = _shared_routes(rows)
    return [
        Contestant(
            key=SESSION_LAYER,
            title="app/db layer",
            target="session_layer:app",
            app_dir=APPS,
            routes=shared,
            path=(project,),
            export=Route("GET", "/export"),
        ),
        Contestant(
            key=SERVICE,
            title="baked service",
            target="app.main:create_app",
            factory=True,
            app_dir=project,
            routes=_service_routes(),
            env={
                "DATABASE_URL": sqlalchemy_url(service_dsn),
                # The service's settings for the pool every contestant gets.
                "DATABASE_POOL_SIZE": str(POOL_SIZE),
                "DATABASE_MAX_OVERFLOW": "0",
            },
            database=service_dsn,
            setup=(("-m", "app.migrate", "upgrade"),),
            seed=functools.partial(seed_service, users=SERVICE_USERS, notes=rows),
            export=Route("GET", "/export/notes"),
        ),
        Contestant(
            key=BASELINE,
            title="Depends (baseline)",
            target="baseline:app",
            app_dir=APPS,
            routes=shared,
        ),
        # The baseline's app in a second server: the ratios between two servers of the
        # same code show how far apart this machine puts them, which is the noise floor
        # under every other comparison.
        Contestant(
            key=BASELINE_AGAIN,
            title="Depends, second server",
            target="baseline:app",
            app_dir=APPS,
            routes=shared,
        ),
        Contestant(
            key=PEER,
            title="fastapi-async-sqlalchemy 0.8.1",
            target="peer:app",
            app_dir=APPS,
            routes=shared,
        ),
        Contestant(
            key="asyncpg",
            title="raw asyncpg",
            target="raw_asyncpg:app",
            app_dir=APPS,
            routes=shared,
        ),
    ]
