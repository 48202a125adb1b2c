"""Run the benchmark: seed the databases, measure the exports' memory, interleave the rounds."""

import argparse
import atexit
import contextlib
import http.client
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from . import database
from .config import DEFAULT_DATABASE_URL, HOST, PEER_PACKAGE, POOL_SIZE
from .contestants import (
    BASELINE,
    BENCHMARKS,
    ENDPOINTS,
    SERVICE,
    SERVICE_PGBOUNCER,
    Contestant,
    Route,
    contestants,
    scale_service,
)
from .database import SCALE_USERS
from .load import WRK_OPTIONS, Sample, Slice, combine, load_slice, warm_up
from .memory import MemorySample, measure_export
from .pgbouncer import PgBouncerError, free_port, running_pgbouncer
from .profile import py_spy, recording, render_profile, summarize
from .report import Results, Round, Scale, render
from .server import UVICORN_OPTIONS, Server, ServerError, request, running, set_up

# The scale benchmark's endpoints, in the order they are measured: those whose cost could
# grow with the table.
SCALE_ENDPOINTS = ("read", "fast-read", "list")

RESULTS = BENCHMARKS / "results"
PROFILES = RESULTS / "profiles"
# Rounds, warm-up seconds and measured seconds per endpoint. Each route has been
# requested once by its check before its warm-up, and a second of load fills the pool
# and the statement caches; the rest of the time goes to measuring.
FULL = (3, 1, 5)
QUICK = (1, 1, 3)
SLICE_SECONDS = 1
ROWS = 1_000_000
PACKAGES = (
    "fastapi", "starlette", "pydantic", "sqlalchemy", "asyncpg", "uvicorn", "uvloop",
    "httptools", PEER_PACKAGE,
)  # fmt: skip


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("--project", type=Path, required=True, help="the baked service")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="a PostgreSQL database for the benchmark; created when missing, its items "
        "table dropped and rebuilt",
    )
    parser.add_argument("--quick", action="store_true", help="one short round, for a smoke run")
    parser.add_argument("--rounds", type=int, help=f"rounds of every contestant ({FULL[0]})")
    parser.add_argument("--warmup", type=int, help=f"warm-up seconds per endpoint ({FULL[1]})")
    parser.add_argument(
        "--seconds",
        type=int,
        help=f"measured seconds per endpoint and contestant, in {SLICE_SECONDS}-second "
        f"slices ({FULL[2]})",
    )
    parser.add_argument("--rows", type=int, default=ROWS, help="rows seeded and exported")
    parser.add_argument(
        "--only", help="comma-separated contestant keys to run (the baseline always runs)"
    )
    parser.add_argument(
        "--no-scale",
        action="store_true",
        help="skip the scale benchmark (the service's list and reads on "
        f"{', '.join(f'{n:,}' for n in SCALE_USERS)} users)",
    )
    parser.add_argument(
        "--profile",
        help="comma-separated contestant keys to sample with py-spy during the first round; "
        f"the collapsed stacks go to {PROFILES.relative_to(BENCHMARKS)}/, a summary into "
        "the report",
    )
    arguments = parser.parse_args()
    rounds, warmup, seconds = QUICK if arguments.quick else FULL
    arguments.rounds = arguments.rounds or rounds
    arguments.warmup = arguments.warmup or warmup
    arguments.seconds = arguments.seconds or seconds
    return arguments


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cores() -> tuple[int, int]:
    """One core for the server and another for wrk."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        sys.exit("The benchmark needs two cores, one for the server and one for wrk.")
    return available[-1], available[0]


def _selected(everyone: list[Contestant], only: str | None) -> list[Contestant]:
    if only is None:
        return everyone
    keys = {BASELINE, *only.split(",")}
    unknown = keys - {c.key for c in everyone}
    if unknown:
        sys.exit(f"Unknown contestant {', '.join(sorted(unknown))}; choose from "
                 f"{', '.join(c.key for c in everyone)}.")  # fmt: skip
    return [c for c in everyone if c.key in keys]


def _prepare(contestant: Contestant, url: str, prepared: set[str]) -> str | None:
    """Recreate, set up and seed the contestant's database, unless an earlier contestant's
    run did it (the database is in `prepared`); why that failed, if it did."""
    if contestant.database is None or contestant.database in prepared:
        return None
    prepared.add(contestant.database)
    _log(f"database: recreating, setting up and seeding the {contestant.title}'s database")
    try:
        database.run(contestant.database, recreate=True)
        set_up(contestant, database_url=url)
        database.run(contestant.database, contestant.seed)
    except ServerError as error:
        return str(error)
    except (OSError, asyncpg.PostgresError) as error:
        return f"preparing its database failed: {error}"
    return None


def _memory(
    chosen: list[Contestant], failures: dict[str, str], *, rows: int, cpu: int, url: str
) -> dict[str, MemorySample | str]:
    """Each export's speed and memory growth, or why it failed, by "<contestant> <format>"."""
    outcomes: dict[str, MemorySample | str] = {}
    for contestant in chosen:
        if contestant.key in failures:
            continue
        for form, export in contestant.exports.items():
            key = f"{contestant.key} {form}"
            _log(f"export: streaming {rows:,} rows as {form} from {contestant.title}")
            header = 1 if form == "csv" else 0
            try:
                sample = measure_export(
                    contestant, export, cpu=cpu, database_url=url, header_lines=header
                )
            except (RuntimeError, OSError, http.client.HTTPException) as error:
                outcomes[key] = f"failed: {str(error).splitlines()[0]}"
                _log(f"  failed: {error}")
                continue
            _log(
                f"  {sample.rows:,} rows in {sample.seconds:.1f} s "
                f"({sample.rows_per_second:,.0f} rows/s), growth {sample.growth_mb:.1f} MB"
            )
            wrong = f"failed: exported {sample.rows:,} rows of {rows:,}"
            outcomes[key] = sample if sample.rows == rows else wrong
    return outcomes


def _start(
    order: list[Contestant],
    failures: dict[str, str],
    stack: contextlib.ExitStack,
    *,
    cpu: int,
    url: str,
) -> list[tuple[Contestant, Server, dict[str, Route]]]:
    """Start every contestant that has not failed and check its routes; record who fails.

    Each started contestant comes with the routes that answered their check: a route
    that answers wrongly is left out and recorded as "<contestant> <endpoint>", so one
    broken endpoint does not hide the others' figures.
    """
    started = []
    for contestant in order:
        if contestant.key in failures:
            continue
        try:
            server = stack.enter_context(running(contestant, cpu=cpu, database_url=url))
        except (ServerError, OSError, http.client.HTTPException) as error:
            failures[contestant.key] = str(error) or type(error).__name__
            _log(f"{contestant.title} did not run: {failures[contestant.key]}")
            continue
        # A route that answers wrongly must not score.
        working = {}
        for endpoint, check in contestant.routes.items():
            try:
                request(server.port, check)
            except (ServerError, OSError, http.client.HTTPException) as error:
                key = f"{contestant.key} {endpoint}"
                failures[key] = str(error) or type(error).__name__
                _log(f"{contestant.title}, {endpoint}: not measured: {failures[key]}")
                continue
            working[endpoint] = check
        started.append((contestant, server, working))
    return started


def _round(
    number: int,
    order: list[Contestant],
    failures: dict[str, str],
    arguments: argparse.Namespace,
    cores: tuple[int, int],
    url: str,
) -> Round:
    """Start every contestant, then measure one endpoint on all of them before the next
    endpoint, in slices that alternate between them, so that every contestant and the
    baseline are measured in the same seconds."""
    server_cpu, wrk_cpu = cores
    profiled = set(arguments.profile.split(",")) if arguments.profile else set()
    measured: Round = {}
    with contextlib.ExitStack() as stack:
        started = _start(order, failures, stack, cpu=server_cpu, url=url)
        for endpoint in ENDPOINTS:
            serving = [(c, s, routes[endpoint]) for c, s, routes in started if endpoint in routes]
            for _, server, route in serving:
                warm_up(server, route, seconds=arguments.warmup, cpu=wrk_cpu)
            # The slices take turns between the contestants, back and forth, so that a
            # slow spell of the machine falls on all of them, not on whoever was running.
            slices: dict[str, list[Slice]] = {c.key: [] for c, _, _ in serving}
            with contextlib.ExitStack() as profiling:
                for contestant, server, _ in serving:
                    if number == 1 and contestant.key in profiled:
                        output = PROFILES / f"{contestant.key}-{endpoint}.txt"
                        profiling.enter_context(recording(server.pid, output, cpu=wrk_cpu))
                for turn in range(arguments.seconds // SLICE_SECONDS):
                    for contestant, server, route in serving[:: 1 if turn % 2 == 0 else -1]:
                        part = load_slice(server, route, seconds=SLICE_SECONDS, cpu=wrk_cpu)
                        slices[contestant.key].append(part)
            for contestant, _, _ in serving:
                sample = combine(slices[contestant.key])
                measured.setdefault(contestant.key, {})[endpoint] = sample
                _log(
                    f"round {number}/{arguments.rounds} {endpoint:6} {contestant.title:32}"
                    f"{sample.rps:7,.0f} req/s  p50 {sample.p50_ms:5.1f} ms  "
                    f"p99 {sample.p99_ms:6.1f} ms  {sample.cpu_us_per_request:5,.0f} µs CPU/req"
                    + (f"  {sample.errors} errors" if sample.errors else "")
                )
    return measured


def _scale(
    project: Path, dsn: str, arguments: argparse.Namespace, cores: tuple[int, int], url: str
) -> Scale:
    """The service's list and reads on users tables of each size in `SCALE_USERS`.

    Each size has a database and a freshly started server of its own, and the sizes are
    measured in the same seconds, in slices that take turns as the rounds' do, so that a
    slow spell of the machine falls on every size, not on whichever was running then.
    """
    server_cpu, wrk_cpu = cores
    samples: dict[int, dict[str, Sample]] = {}
    failures: dict[str, str] = {}
    services: list[tuple[int, Contestant]] = []
    for users in SCALE_USERS:
        sized = database.with_database(dsn, f"{database.name(dsn)}_{users}")
        service = scale_service(project, sized, users=users)
        _log(f"scale: recreating, migrating and seeding {database.name(sized)}")
        try:
            database.run(sized, recreate=True)
            set_up(service, database_url=url)
            database.run(sized, [database.add_users(1, users), "VACUUM ANALYZE users"])
        except (ServerError, OSError, asyncpg.PostgresError) as error:
            failures[f"{users:,} users"] = str(error)
            continue
        services.append((users, service))
    with contextlib.ExitStack() as stack:
        serving: list[tuple[int, Contestant, Server]] = []
        for users, service in services:
            try:
                server = stack.enter_context(running(service, cpu=server_cpu, database_url=url))
            except (ServerError, OSError) as error:
                failures[f"{users:,} users"] = str(error)
                continue
            serving.append((users, service, server))
        for endpoint in SCALE_ENDPOINTS:
            checked: list[tuple[int, Server, Route]] = []
            for users, service, server in serving:
                route = service.routes[endpoint]
                try:
                    request(server.port, route)
                except (ServerError, OSError, http.client.HTTPException) as error:
                    failures[f"{users:,} users, {endpoint}"] = str(error)
                    continue
                warm_up(server, route, seconds=arguments.warmup, cpu=wrk_cpu)
                checked.append((users, server, route))
            parts: dict[int, list[Slice]] = {users: [] for users, _, _ in checked}
            for turn in range(arguments.seconds // SLICE_SECONDS):
                for users, server, route in checked[:: 1 if turn % 2 == 0 else -1]:
                    parts[users].append(
                        load_slice(server, route, seconds=SLICE_SECONDS, cpu=wrk_cpu)
                    )
            for users, _, _ in checked:
                samples.setdefault(users, {})[endpoint] = sample = combine(parts[users])
                _log(f"scale {users:>9,} {endpoint:9} {sample.rps:7,.0f} req/s  "
                     f"p50 {sample.p50_ms:6.1f} ms")  # fmt: skip
    return Scale(samples, failures)


def _profiles(chosen: list[Contestant], keys: list[str]) -> list[str]:
    """The summary of every recording of the first round, in the table's order."""
    lines = [
        "## Profiles",
        "",
        "py-spy samples of the first round, taken while each endpoint was measured; "
        "the sampling costs the server some throughput, so this run's figures are not "
        "comparable with an unprofiled one.",
        "",
    ]
    for contestant in chosen:
        if contestant.key not in keys:
            continue
        for endpoint, title in ENDPOINTS.items():
            raw = PROFILES / f"{contestant.key}-{endpoint}.txt"
            if raw.exists():
                lines += render_profile(f"{contestant.title}, {title}", summarize(raw), raw)
    return lines


def _versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return ", ".join(
        [f"Python {platform.python_version()}", *found, wrk.stdout.split(" [")[0].strip()]
    )


def main() -> int:
    arguments = _arguments()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    cores = _cores()
    url = arguments.database_url
    service_dsn = database.with_database(url, database.name(url) + "_service")
    pooler_port = free_port()
    # The service's database, through PgBouncer: trust auth, as the harness's own server.
    user = urlsplit(service_dsn).username or "postgres"
    pooled_dsn = urlunsplit(urlsplit(service_dsn)._replace(netloc=f"{user}@{HOST}:{pooler_port}"))
    everyone = contestants(
        arguments.project, service_dsn, rows=arguments.rows, pooled_dsn=pooled_dsn
    )
    chosen = _selected(everyone, arguments.only)
    failures: dict[str, str] = {}
    if any(c.key == SERVICE_PGBOUNCER for c in chosen):
        # As many server connections as the direct service's pool holds.
        pooler = contextlib.ExitStack()
        atexit.register(pooler.close)
        try:
            pooler.enter_context(running_pgbouncer(url, port=pooler_port, pool_size=POOL_SIZE))
        except PgBouncerError as error:
            failures[SERVICE_PGBOUNCER] = str(error)
            _log(f"  failed: {error}")
    sqlalchemy_url = database.sqlalchemy_url(url)

    _log(f"database: rebuilding items with {arguments.rows:,} rows")
    try:
        postgres = database.run(url, database.items_seed(arguments.rows))
    except (OSError, asyncpg.PostgresError) as error:
        sys.exit(
            f"PostgreSQL at {url} refused the benchmark ({error}). Start it, or point "
            "--database-url at a server where this user may create databases."
        )
    # The service's tables in the baseline's database, built by the service's migrations,
    # for the baseline's insert of the service's two rows (apps/service_tables.py).
    [service] = [c for c in everyone if c.key == SERVICE]
    try:
        set_up(
            replace(service, env={**service.env, "DATABASE_URL": sqlalchemy_url}),
            database_url=sqlalchemy_url,
        )
    except ServerError as error:
        # Its check then fails, and the report says why the endpoint was left out.
        _log(f"  the service's tables for the baseline could not be built: {error}")
    prepared: set[str] = set()
    for contestant in chosen:
        if problem := _prepare(contestant, sqlalchemy_url, prepared):
            failures[contestant.key] = problem
            _log(f"  failed: {problem}")
    memory = _memory(chosen, failures, rows=arguments.rows, cpu=cores[0], url=sqlalchemy_url)
    if arguments.profile:
        PROFILES.mkdir(parents=True, exist_ok=True)
        unknown = set(arguments.profile.split(",")) - {c.key for c in chosen}
        if unknown:
            sys.exit(f"--profile names {', '.join(sorted(unknown))}, which this run does not run.")
        py_spy()  # installed now, before any server runs
    rounds = []
    for number in range(arguments.rounds):
        # Rotate the order so that no contestant always runs first or last.
        shift = number % len(chosen)
        order = chosen[shift:] + chosen[:shift]
        rounds.append(_round(number + 1, order, failures, arguments, cores, sqlalchemy_url))

    scale = None
    if not arguments.no_scale and any(c.key == SERVICE for c in chosen):
        scale_dsn = database.with_database(url, database.name(url) + "_service_scale")
        scale = _scale(arguments.project, scale_dsn, arguments, cores, sqlalchemy_url)

    minutes = (time.monotonic() - started) / 60
    # Only a run with every default replaces the table the docs quote.
    timing = (arguments.rounds, arguments.warmup, arguments.seconds)
    defaults = (
        timing == FULL
        and arguments.rows == ROWS
        and arguments.only is None
        and arguments.profile is None
        and not arguments.no_scale
    )
    kind = "quick" if arguments.quick else "full" if defaults else "custom"
    stem = "latest" if kind == "full" else kind
    header = [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {kind} run of {minutes:.1f} min: "
        f"{arguments.rounds} round(s), each endpoint warmed up for {arguments.warmup} s and "
        f"measured for {arguments.seconds} s, in slices of {SLICE_SECONDS} s that alternate "
        f"between the contestants, with `wrk {' '.join(WRK_OPTIONS)}` on core {cores[1]} "
        f"and `uvicorn {' '.join(UVICORN_OPTIONS)}` on core {cores[0]}; {postgres}; "
        f"pool of {POOL_SIZE}, no overflow; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after.",
        "",
        _versions() + ".",
    ]
    markdown = render(Results(chosen, rounds, failures, memory, header, scale))
    if arguments.profile:
        markdown += "\n".join(_profiles(chosen, arguments.profile.split(",")))
    raw = {
        "rounds": [
            {key: {e: asdict(s) for e, s in samples.items()} for key, samples in measured.items()}
            for measured in rounds
        ],
        "failures": failures,
        "memory": {k: v if isinstance(v, str) else asdict(v) for k, v in memory.items()},
        "scale": None
        if scale is None
        else {
            "samples": {
                str(users): {e: asdict(s) for e, s in measured.items()}
                for users, measured in scale.samples.items()
            },
            "failures": scale.failures,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(markdown)
    (RESULTS / f"{stem}.json").write_text(json.dumps(raw, indent=2) + "\n")
    print(markdown)
    _log(f"written to {RESULTS / stem}.md in {minutes:.1f} min")
    return 1 if failures or any(isinstance(v, str) for v in memory.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
