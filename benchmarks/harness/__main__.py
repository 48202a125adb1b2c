"""Run the benchmark: seed the databases, measure the exports' memory, interleave the rounds."""

import argparse
import contextlib
import http.client
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import asyncpg

from . import database
from .config import DEFAULT_DATABASE_URL, PEER_PACKAGE, POOL_SIZE
from .contestants import BASELINE, BENCHMARKS, ENDPOINTS, Contestant, contestants
from .load import WRK_OPTIONS, Slice, combine, load_slice, warm_up
from .memory import MemorySample, measure_export
from .report import Results, Round, render
from .server import UVICORN_OPTIONS, Server, ServerError, request, running, set_up

RESULTS = BENCHMARKS / "results"
# Rounds, warm-up seconds and measured seconds per endpoint.
FULL = (3, 2, 5)
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


def _prepare(contestant: Contestant, url: str) -> str | None:
    """Recreate, set up and seed the contestant's own database; why that failed, if it did."""
    if contestant.database is None:
        return None
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
    """Each export's memory growth, or why it failed."""
    outcomes: dict[str, MemorySample | str] = {}
    for contestant in chosen:
        if contestant.export is None or contestant.key in failures:
            continue
        _log(f"memory: streaming {rows:,} rows from {contestant.title}")
        try:
            sample = measure_export(contestant, contestant.export, cpu=cpu, database_url=url)
        except (RuntimeError, OSError, http.client.HTTPException) as error:
            outcomes[contestant.key] = f"failed: {str(error).splitlines()[0]}"
            _log(f"  failed: {error}")
            continue
        _log(f"  {sample.rows:,} rows in {sample.seconds:.1f} s, growth {sample.growth_mb:.1f} MB")
        wrong = f"failed: exported {sample.rows:,} rows of {rows:,}"
        outcomes[contestant.key] = sample if sample.rows == rows else wrong
    return outcomes


def _start(
    order: list[Contestant],
    failures: dict[str, str],
    stack: contextlib.ExitStack,
    *,
    cpu: int,
    url: str,
) -> list[tuple[Contestant, Server]]:
    """Start every contestant that has not failed and check its routes; record who fails."""
    started = []
    for contestant in order:
        if contestant.key in failures:
            continue
        try:
            server = stack.enter_context(running(contestant, cpu=cpu, database_url=url))
            # A contestant that answers wrongly must not score.
            for check in contestant.routes.values():
                request(server.port, check)
        except (ServerError, OSError, http.client.HTTPException) as error:
            failures[contestant.key] = str(error) or type(error).__name__
            _log(f"{contestant.title} did not run: {failures[contestant.key]}")
            continue
        started.append((contestant, server))
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
    measured: Round = {}
    with contextlib.ExitStack() as stack:
        started = _start(order, failures, stack, cpu=server_cpu, url=url)
        for endpoint in ENDPOINTS:
            serving = [(c, s, c.routes[endpoint]) for c, s in started if endpoint in c.routes]
            for _, server, route in serving:
                warm_up(server, route, seconds=arguments.warmup, cpu=wrk_cpu)
            # The slices take turns between the contestants, back and forth, so that a
            # slow spell of the machine falls on all of them, not on whoever was running.
            slices: dict[str, list[Slice]] = {c.key: [] for c, _, _ in serving}
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
    everyone = contestants(arguments.project, service_dsn, rows=arguments.rows)
    chosen = _selected(everyone, arguments.only)
    sqlalchemy_url = database.sqlalchemy_url(url)

    _log(f"database: rebuilding items with {arguments.rows:,} rows")
    try:
        postgres = database.run(url, database.items_seed(arguments.rows))
    except (OSError, asyncpg.PostgresError) as error:
        sys.exit(
            f"PostgreSQL at {url} refused the benchmark ({error}). Start it, or point "
            "--database-url at a server where this user may create databases."
        )
    failures: dict[str, str] = {}
    for contestant in chosen:
        if problem := _prepare(contestant, sqlalchemy_url):
            failures[contestant.key] = problem
            _log(f"  failed: {problem}")
    memory = _memory(chosen, failures, rows=arguments.rows, cpu=cores[0], url=sqlalchemy_url)
    rounds = []
    for number in range(arguments.rounds):
        # Rotate the order so that no contestant always runs first or last.
        shift = number % len(chosen)
        order = chosen[shift:] + chosen[:shift]
        rounds.append(_round(number + 1, order, failures, arguments, cores, sqlalchemy_url))

    minutes = (time.monotonic() - started) / 60
    # Only a run with every default replaces the table the docs quote.
    timing = (arguments.rounds, arguments.warmup, arguments.seconds)
    defaults = timing == FULL and arguments.rows == ROWS and arguments.only is None
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
    markdown = render(Results(chosen, rounds, failures, memory, header))
    raw = {
        "rounds": [
            {key: {e: asdict(s) for e, s in samples.items()} for key, samples in measured.items()}
            for measured in rounds
        ],
        "failures": failures,
        "memory": {k: v if isinstance(v, str) else asdict(v) for k, v in memory.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(markdown)
    (RESULTS / f"{stem}.json").write_text(json.dumps(raw, indent=2) + "\n")
    print(markdown)
    _log(f"written to {RESULTS / stem}.md in {minutes:.1f} min")
    return 1 if failures or any(isinstance(v, str) for v in memory.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
