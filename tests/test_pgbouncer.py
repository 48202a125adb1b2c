"""The baked service behind a real PgBouncer in transaction mode, with DATABASE_POOLER=pgbouncer.

The baked suite runs through it: TEST_DATABASE_URL leads to PgBouncer, whose pool is
small enough for a server other test processes share, and TEST_DATABASE_DIRECT_URL to
the server, for creating databases and for the migration tests (as `app.ops.migrate` goes
around the pooler). The tests that hold only on a connection of their own carry the
`direct_connection` marker with their reason; their number is pinned here, so that
none is skipped unseen.

PgBouncer comes from Debian's package (`.ci/run` installs it) and runs on a free loopback
port in front of the PostgreSQL server of TEST_DATABASE_URL (tests/pgbouncer.py). On the
PostgreSQL bake with both databases and the example API, what `make serve` runs
(`python -m app.ops.migrate upgrade` over DATABASE_DIRECT_URL, then `python -m app.ops.serve`)
with 4 workers answers 40 concurrent clients for 20 s of reads, lists and inserts
without one error, while PgBouncer's pool is smaller than the workers' pools would be:
no 500, no "prepared statement does not exist", no "already exists" in the log.
"""

import asyncio
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import URL, make_url

from tests.conftest import BIN, bake_into, run, server_url
from tests.pgbouncer import running_pgbouncer
from tests.servers import free_port, new_database, wait_until_answering

ANSWERS = {"database": "postgresql", "second_database": "yes", "include_example_api": "yes"}
WORKERS = 4
CLIENTS = 40
LOAD_SECONDS = 20
# Each worker's pool could open 5 + 10 connections per database without the pooler.
LOAD_POOL_SIZE = 8
assert LOAD_POOL_SIZE < WORKERS * (5 + 10)
STARTUP_DEADLINE = 60
POOLER_ERRORS = ("prepared statement", "already exists")
# Per database; transaction mode needs a server connection per open transaction, and
# no test of the suite holds more than this many at once.
SUITE_POOL_SIZE = 10
# The baked tests marked `direct_connection`, by reason: 10 count or exhaust the app's
# pool, 4 check its budget, 2 hold 20 transactions at a barrier, 3 have the server end
# the connections the app's own pool holds, which behind PgBouncer are PgBouncer's, and
# 1 needs standalone reads in autocommit, which are off behind it.
DIRECT_ONLY = 20
# The other skips the suite may make here: tests/test_replica.py gives it a replica.
OTHER_SKIPS = ("needs a streaming replica",)
SUITE_DEADLINE = 1800  # seconds; the whole suite in one process, on a shared machine


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake_into(tmp_path_factory.mktemp("pooled"), **ANSWERS)


def test_the_baked_suite_passes_through_pgbouncer(project: Path) -> None:
    server = server_url("TEST_DATABASE_URL", "PostgreSQL")
    with (
        new_database(server, "pooled_suite") as shared,
        running_pgbouncer(server, pool_size=SUITE_POOL_SIZE) as pooler,
    ):
        env = {
            "DATABASE_POOLER": "pgbouncer",
            "TEST_DATABASE_URL": _url(make_url(pooler.url).set(database=shared.database)),
            "TEST_DATABASE_DIRECT_URL": _url(shared),
        }
        # One process: the suite's parametrised cursors differ between xdist workers.
        command = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0")
        result = run(*command, cwd=project, env=env, timeout=SUITE_DEADLINE)
        pooler_log = pooler.log.read_text()

    output = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    direct = [line for line in skipped if "needs a direct connection" in line]
    others = [line for line in skipped if line not in direct]
    assert [line for line in others if not any(why in line for why in OTHER_SKIPS)] == []
    assert sum(_count(line) for line in direct) == DIRECT_ONLY, output
    assert "login attempt" in pooler_log  # the suite went through PgBouncer


def _count(skipped: str) -> int:
    """How many tests one `-ra` line stands for: "SKIPPED [3] path:line: reason"."""
    return int(skipped.split("[", 1)[1].split("]", 1)[0])


def test_four_workers_answer_forty_clients_through_pgbouncer_without_an_error(
    project: Path, tmp_path: Path
) -> None:
    server = server_url("TEST_DATABASE_URL", "PostgreSQL")
    with (
        new_database(server, "pooled_main") as main,
        new_database(server, "pooled_audit") as audit,
        running_pgbouncer(server, pool_size=LOAD_POOL_SIZE) as pooler,
    ):
        through = make_url(pooler.url)
        env = {
            "SECRET_KEY": "load-test",
            "DATABASE_POOLER": "pgbouncer",
            "DATABASE_URL": _url(through.set(database=main.database)),
            "AUDIT_DATABASE_URL": _url(through.set(database=audit.database)),
            "DATABASE_DIRECT_URL": _url(main),
            "AUDIT_DATABASE_DIRECT_URL": _url(audit),
        }
        migrated = run("python", "-m", "app.ops.migrate", "upgrade", cwd=project, env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "login attempt" not in pooler.log.read_text()  # migrations went around it

        port = free_port()
        server_log = tmp_path / "serve.log"
        serve_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(WORKERS), "DRAIN_DELAY": "0"}
        with server_log.open("wb") as sink:
            process = subprocess.Popen(
                [BIN / "python", "-m", "app.ops.serve"],
                cwd=project,
                env={**os.environ, **serve_env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_answering(
                f"{base}/health/ready", process, server_log, deadline=STARTUP_DEADLINE
            )
            outcomes = asyncio.run(_load(base))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        pooler_log = pooler.log.read_text()

    log = server_log.read_text()
    errors = {outcome: count for outcome, count in outcomes.items() if not outcome.startswith("2")}
    print(f"{sum(outcomes.values())} requests through PgBouncer: {dict(outcomes)}")
    assert errors == {}, log[-6000:]
    assert sum(outcomes.values()) > CLIENTS
    assert [line for line in log.splitlines() if any(e in line for e in POOLER_ERRORS)] == []
    assert "login attempt" in pooler_log


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


async def _load(base: str) -> Counter[str]:
    """CLIENTS clients creating, reading and listing users and notes for LOAD_SECONDS."""
    outcomes: Counter[str] = Counter()
    stop = time.monotonic() + LOAD_SECONDS
    # Idle connections expire on the client's side before uvicorn's keep-alive timeout
    # (5 s) closes them; with equal timeouts a request can go out on a connection the
    # server is closing, a ReadError that has nothing to do with PgBouncer.
    limits = httpx.Limits(
        max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=2
    )
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def one_client(number: int) -> None:
            for turn in itertools.count():
                if time.monotonic() > stop:
                    return
                name = f"u{number}x{turn}x{uuid.uuid4().hex[:8]}"
                try:
                    created = await client.post(
                        "/users", json={"email": f"{name}@example.com", "username": name}
                    )
                    outcomes[f"{created.status_code} POST /users"] += 1
                    if created.status_code != 201:
                        continue
                    user = created.json()["id"]
                    for response in (
                        await client.get(f"/users/{user}"),
                        await client.post("/notes", json={"user_id": user, "title": name}),
                        await client.get("/users", params={"limit": 20}),
                        await client.get("/notes", params={"limit": 20}),
                    ):
                        path = response.request.url.path.split("/")[1]
                        outcomes[f"{response.status_code} {response.request.method} /{path}"] += 1
                except httpx.HTTPError as exc:
                    outcomes[f"failed: {type(exc).__name__}"] += 1

        await asyncio.gather(*(one_client(number) for number in range(CLIENTS)))
    return outcomes
