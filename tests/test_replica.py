"""Read replicas, tested against a real streaming replica of the test PostgreSQL server.

`tests/replica.py` starts a hot standby that follows TEST_DATABASE_URL's server on a
free loopback port, for this module only. Against it:

- the baked layer's routing tests run (tests/db/test_replica_routing.py), which prove
  with `pg_is_in_recovery()` where each kind of statement and request ran;
- a baked service under uvicorn with DATABASE_REPLICA_URL serves a read from the
  replica (it answers 404 for a user the paused replica has not replayed yet, and holds
  a backend there), and loses no request when the replica stops under load: readiness
  reports the replica down and stays 200, since the primary serves.
"""

import asyncio
import json
import os
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import URL

from tests.conftest import BIN, RUNNING_IN_CI, bake_into, run, server_url
from tests.replica import (
    Replica,
    ReplicaUnavailable,
    pause_replay,
    resume_replay,
    streaming_replica,
)
from tests.servers import free_port, new_database, wait_until_answering

STARTUP_DEADLINE = 60.0
# The replica replays, and the service notices a change of the replica, within seconds;
# these deadlines leave room for a machine shared with other test runs.
DEADLINE = 60.0
LOADERS = 4


@pytest.fixture(scope="module")
def replica() -> Iterator[Replica]:
    primary = server_url("TEST_DATABASE_URL", "PostgreSQL")
    try:
        with streaming_replica(primary) as replica:
            yield replica
    except ReplicaUnavailable as exc:
        reason = f"needs a streaming replica, and this machine cannot run one: {exc}"
        if RUNNING_IN_CI:
            pytest.fail(f"{reason} (CI is set, so this test may not be skipped)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake_into(tmp_path_factory.mktemp("replica"))


def test_the_layer_routes_each_statement_as_its_tests_prove_on_the_replica(
    replica: Replica, project: Path
) -> None:
    env = {
        "TEST_DATABASE_URL": server_url("TEST_DATABASE_URL", "PostgreSQL"),
        "TEST_REPLICA_URL": replica.url.render_as_string(hide_password=False),
    }
    result = run(
        *("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"),
        "tests/db/test_replica_routing.py",
        cwd=project,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout, result.stdout[-3000:]


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _post(url: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def _wait_for(what: str, condition: object, log: Path) -> None:
    assert callable(condition)
    give_up = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"{what} did not happen:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


async def _fetchval(url: URL, query: str, *args: object) -> object:
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


def _service_backends(replica: URL, database: str) -> int:
    """How many backends the service holds on the replica, for its database."""
    count = asyncio.run(
        _fetchval(
            replica,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    )
    assert isinstance(count, int)
    return count


class _Load(threading.Thread):
    """Reads one user and the stats (four sessions at once) over and over, counting statuses."""

    def __init__(self, base: str, user_id: str) -> None:
        super().__init__(daemon=True)
        self.urls = [f"{base}/users/{user_id}", f"{base}/stats"]
        self.statuses: Counter[int | str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for url in self.urls:
                try:
                    status, _ = _get(url)
                except Exception as exc:  # counted, and the test fails on it
                    status = type(exc).__name__
                self.statuses[status] += 1


def test_a_service_reads_from_the_replica_and_loses_no_request_when_it_stops(
    replica: Replica, project: Path, tmp_path: Path
) -> None:
    primary = server_url("TEST_DATABASE_URL", "PostgreSQL")
    with new_database(primary, "replica") as database:
        name = str(database.database)
        primary_url = database.set(drivername="postgresql")
        replica_url = replica.url.set(database=name)
        env = {
            "DATABASE_URL": primary_url.render_as_string(hide_password=False),
            "DATABASE_REPLICA_URL": replica_url.render_as_string(hide_password=False),
            # Long enough that pausing the replay below does not take the replica out of use.
            "DATABASE_REPLICA_MAX_LAG": "3600",
        }
        migrated = run("python", "-m", "app.ops.migrate", "upgrade", cwd=project, env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / "uvicorn.log"
        with log.open("w") as output:
            service = subprocess.Popen(
                [
                    *(BIN / "uvicorn", "app.main:create_app", "--factory", "--no-access-log"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                ],
                cwd=project,
                env={**os.environ, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_answering(f"{base}/health/live", service, log, deadline=STARTUP_DEADLINE)
            ready = f"{base}/health/ready"
            _wait_for("the replica in use", lambda: _get(ready)[1].get("replica") == "ok", log)

            # With replay paused, a user committed on the primary is not on the replica yet.
            asyncio.run(pause_replay(replica.url))
            try:
                status, user = _post(
                    f"{base}/users", {"email": "reader@example.com", "username": "reader"}
                )
                assert status == 201
                user_id = str(user["id"])
                query = "SELECT count(*) FROM users WHERE id = $1"
                on_primary = asyncio.run(_fetchval(primary_url, query, uuid.UUID(user_id)))
                assert on_primary == 1
                assert _get(f"{base}/users/{user_id}")[0] == 404  # read on the replica
                assert _service_backends(replica_url, name) >= 1
            finally:
                asyncio.run(resume_replay(replica.url))
            replayed = f"{base}/users/{user_id}"
            _wait_for("the replica replaying the user", lambda: _get(replayed)[0] == 200, log)

            loaders = [_Load(base, user_id) for _ in range(LOADERS)]
            for loader in loaders:
                loader.start()

            def answered() -> int:
                return sum(sum(loader.statuses.values()) for loader in loaders)

            _wait_for("the first requests", lambda: answered() >= 20, log)
            replica.stop()
            stopped_at = answered()
            _wait_for("requests after the stop", lambda: answered() >= stopped_at + 100, log)
            for loader in loaders:
                loader.stop.set()
            for loader in loaders:
                loader.join(timeout=DEADLINE)
            statuses = sum((loader.statuses for loader in loaders), Counter())
            assert set(statuses) == {200}, statuses

            status, readiness = _get(ready)
            assert status == 200, readiness
            assert str(readiness["replica"]).startswith("down"), readiness
        finally:
            service.terminate()
            service.wait(timeout=DEADLINE)
            if not replica.running():
                replica.start()  # for any test after this one
