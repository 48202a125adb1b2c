"""`python -m app.ops.serve` with several workers: each builds its own engines, within budget.

uvicorn spawns each worker as a fresh interpreter. Each must log its own startup and
its own connection budget line (different process ids, one budget line per worker),
which shows that no engine or pool was inherited from the supervisor. When the
workers' pools cannot fit in the server's max_connections, the command must refuse to
start with one line naming the numbers and the fix, before any worker starts.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.conftest import BIN, Bake, run, server_url
from tests.servers import free_port, new_database, wait_until_answering

STARTUP_DEADLINE = 60
STOP_DEADLINE = 60
PURGE_JOB = "purge-deleted-notes"
SERVERS = {
    "postgresql": ("TEST_DATABASE_URL", "PostgreSQL"),
    "mysql": ("TEST_MYSQL_URL", "MariaDB"),
}


def test_each_worker_builds_its_own_engines_and_logs_its_budget(bake: Bake, tmp_path: Path) -> None:
    server = make_url(server_url("TEST_DATABASE_URL", "PostgreSQL"))
    project = bake(database="postgresql")
    with new_database(server.render_as_string(hide_password=False), "workers") as database:
        url = database.set(drivername="postgresql").render_as_string(hide_password=False)
        migrated = run(
            "python", "-m", "app.ops.migrate", "upgrade", cwd=project, env={"DATABASE_URL": url}
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr

        port = free_port()
        log = tmp_path / "serve.log"
        env = {"DATABASE_URL": url, "PORT": str(port), "WEB_CONCURRENCY": "2", "DRAIN_DELAY": "0"}
        with log.open("w") as output:
            service = subprocess.Popen(
                [BIN / "python", "-m", "app.ops.serve"],
                cwd=project,
                env={**os.environ, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            ready = f"http://127.0.0.1:{port}/health/ready"
            wait_until_answering(ready, service, log, deadline=STARTUP_DEADLINE)
            # Both workers answer once both logged their budget; wait for the second.
            _wait_for_lines(log, "connection budget of database main", 2, service)
        finally:
            exit_status = _stop(service)

    messages = _messages(log)
    started = _pids(messages, "Started server process")
    supervisor = _pids(messages, "Started parent process")
    budgets = [m for m in messages if "connection budget of database main" in m]
    budget_pids = {int(m.split(":")[0].removeprefix("worker ")) for m in budgets}

    assert len(started) == 2, messages
    assert budget_pids == started
    assert supervisor == {service.pid}
    assert service.pid not in started
    for budget in budgets:
        assert ": 2 workers x 15 connections = 30, of the " in budget
    assert exit_status == 0, log.read_text()[-4000:]


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_a_fleet_over_the_connection_budget_is_refused_in_one_line(
    bake: Bake, database: str
) -> None:
    variable, what = SERVERS[database]
    project = bake(database=database)
    with new_database(server_url(variable, what), "budget") as url:
        env = {
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "WEB_CONCURRENCY": "2",
            # Two workers here, but the settings say 10,000 share the database.
            "DATABASE_TOTAL_WORKERS": "10000",
            "PORT": str(free_port()),
        }
        refused = run(
            "python", "-m", "app.ops.serve", cwd=project, env=env, timeout=STARTUP_DEADLINE
        )

    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 1, refused.stderr
    assert len(errors) == 1, refused.stderr
    assert errors[0].startswith(
        "error: the connection budget does not fit: database main: 10000 workers x 15 "
        "connections = 150000, of the "
    )
    assert "Lower WEB_CONCURRENCY (or DATABASE_TOTAL_WORKERS)" in errors[0]
    assert "Traceback" not in refused.stderr
    assert "Started server process" not in refused.stderr  # no worker was started


def _stop(service: subprocess.Popen[bytes]) -> int:
    service.send_signal(signal.SIGTERM)
    try:
        return service.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        service.kill()
        service.wait()
        raise


def _pids(messages: list[str], started: str) -> set[int]:
    """The process ids in uvicorn's lines such as "Started server process [1234]"."""
    pattern = re.compile(re.escape(started) + r" \[(\d+)\]")
    return {int(found[1]) for m in messages if (found := pattern.fullmatch(m))}


def _messages(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    return [json.loads(line)["message"] for line in lines if line.startswith("{")]


def _wait_for_lines(log: Path, text: str, count: int, service: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + STARTUP_DEADLINE
    while log.read_text().count(text) < count:
        if service.poll() is not None or time.monotonic() > give_up:
            raise AssertionError(f"fewer than {count} lines with {text!r}:\n{log.read_text()}")
        time.sleep(0.2)


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_three_workers_purge_once_per_interval_not_once_each(
    bake: Bake, tmp_path: Path, database: str
) -> None:
    variable, what = SERVERS[database]
    project = bake(database=database)
    with new_database(server_url(variable, what), "purge") as url:
        env = {
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "PORT": str(free_port()),
            "WEB_CONCURRENCY": "3",
            "DRAIN_DELAY": "0",
            "PURGE_INTERVAL": "1",
            "LOG_LEVEL": "DEBUG",  # the runs that skip log at DEBUG
        }
        migrated = run("python", "-m", "app.ops.migrate", "upgrade", cwd=project, env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        log = tmp_path / "serve.log"
        with log.open("w") as output:
            service = subprocess.Popen(
                [BIN / "python", "-m", "app.ops.serve"],
                cwd=project,
                env={**os.environ, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for_lines(log, "connection budget of database main", 3, service)
            _wait_for_lines(log, f"job {PURGE_JOB} ran for the interval from ", 4, service)
        finally:
            _stop(service)

    messages = _messages(log)
    ran = [m.removeprefix(f"job {PURGE_JOB} ran for the interval from ") for m in messages]
    intervals = [m for m, full in zip(ran, messages, strict=True) if m != full]
    skipped = [m for m in messages if m.startswith(f"job {PURGE_JOB}: ")]
    failed = [m for m in messages if m.startswith(f"job {PURGE_JOB} failed")]

    assert failed == []
    assert len(intervals) >= 4
    assert len(set(intervals)) == len(intervals), intervals  # no interval ran twice
    # The other two workers woke up for those intervals too, and stood aside.
    assert len(skipped) >= len(intervals), messages
