"""A rolling restart of `python -m app.ops.serve` under load: no request fails.

A baked service on an SQLite file runs two workers. Clients send requests without
pause, each on a new connection, the way a load balancer does: only while the
replica's /health/ready answers 200, and retrying a refused connection. SIGTERM goes to
the supervisor, as `docker stop` or Kubernetes sends it: /health/ready must answer 503
while the workers still serve, a download in flight when the port closes must complete,
and the process must exit 0. A replacement then starts on the same port, and the
clients must have seen no failure across the restart.
"""

import http.client
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import BIN, Bake, run
from tests.servers import free_port, wait_until_answering

NOTES = 2_000  # about 2 MB of export, read in two halves across the port's closing
DRAIN_DELAY = 2
STARTUP_DEADLINE = 60
STOP_DEADLINE = 60


def _seed(database: Path) -> None:
    with sqlite3.connect(database) as connection:
        author = uuid.uuid4().hex
        connection.execute(
            "INSERT INTO users (id, email, username, full_name, preferences)"
            " VALUES (?, 'author@example.com', 'author', '', '{}')",
            (author,),
        )
        connection.executemany(
            "INSERT INTO notes (user_id, title, body) VALUES (?, ?, ?)",
            [(author, f"note {n}", "x" * 1000) for n in range(NOTES)],
        )


def _request(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class _Balancer(threading.Thread):
    """A load balancer's view of one replica: polls /health/ready, sends only while it is 200.

    Every answer is kept: a status code and body, or None while the port is refused.
    """

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.answers: list[tuple[int | None, bytes]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                answer: tuple[int | None, bytes] = _request(self.port, "/health/ready")
            except (ConnectionRefusedError, ConnectionResetError):
                answer = (None, b"")
            self.answers.append(answer)
            if answer[0] == 200:
                self.ready.set()
            else:
                self.ready.clear()
            time.sleep(0.05)


class _Load(threading.Thread):
    """Sends GET requests one after another while the balancer says the replica is ready.

    A refused connection is retried (the balancer had not seen the replica go yet);
    anything else that is not a 200 is a failed request.
    """

    def __init__(self, port: int, path: str, balancer: _Balancer) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.balancer = balancer
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.balancer.ready.wait(timeout=0.1):
                continue
            try:
                status, _ = _request(self.port, self.path)
            except ConnectionRefusedError:
                self.outcomes["refused, retried"] += 1
                time.sleep(0.02)
                continue
            except Exception as exc:  # any other way to fail is a failed request
                self.failures.append(repr(exc))
                continue
            if status == 200:
                self.outcomes["ok"] += 1
            else:
                self.failures.append(f"status {status}")


class _Download(threading.Thread):
    """Reads the first chunk of the export, waits for `resume`, then reads it to the end."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.started = threading.Event()
        self.resume = threading.Event()
        self.lines = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            connection.request("GET", "/export/notes")
            response = connection.getresponse()
            body = response.read(65536)
            self.started.set()
            self.resume.wait(timeout=60)
            body += response.read()  # raises IncompleteRead if the stream is cut short
            self.lines = body.count(b"\n")
            connection.close()
        except BaseException as exc:  # reported by the test, in its own thread
            self.error = exc
            self.started.set()


def _start(project: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "DRAIN_DELAY": str(DRAIN_DELAY),
        "GRACEFUL_TIMEOUT": "10",
        "EXPORT_SEND_TIMEOUT": "60",
    }
    with log.open("w") as output:
        return subprocess.Popen(
            [BIN / "python", "-m", "app.ops.serve"],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_until_refused(port: int, deadline: float) -> None:
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        try:
            _request(port, "/health/live")
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"port {port} still accepted connections {deadline} s after SIGTERM")


def test_a_rolling_restart_under_load_fails_no_request(bake: Bake, tmp_path: Path) -> None:
    project = bake(database="sqlite")
    migrated = run("python", "-m", "app.ops.migrate", "upgrade", cwd=project)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    _seed(project / "my-service.db")

    port = free_port()
    old_log, new_log = tmp_path / "old.log", tmp_path / "new.log"
    old = _start(project, port, old_log)
    new: subprocess.Popen[bytes] | None = None
    readiness = _Balancer(port)
    loads = [_Load(port, "/notes/1", readiness), _Load(port, "/health/live", readiness)]
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/health/ready", old, old_log, deadline=60)
        for thread in (*loads, readiness):
            thread.start()
        time.sleep(0.5)
        served_before = sum(load.outcomes["ok"] for load in loads)

        old.send_signal(signal.SIGTERM)  # to the supervisor alone, as `docker stop` does
        download = _Download(port)
        download.start()
        assert download.started.wait(timeout=30)
        _wait_until_refused(port, deadline=DRAIN_DELAY + 30)
        download.resume.set()
        try:
            exit_status = old.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_DEADLINE} s after SIGTERM:\n{old_log.read_text()}")
        download.join(timeout=30)
        served_by_old = sum(load.outcomes["ok"] for load in loads)

        new = _start(project, port, new_log)
        wait_until_answering(f"http://127.0.0.1:{port}/health/ready", new, new_log, deadline=60)
        time.sleep(0.5)
    finally:
        for thread in (*loads, readiness):
            thread.stop.set()
            thread.join(timeout=30)
        for server in (old, new):
            if server is not None and server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()

    failures = [failure for load in loads for failure in load.failures]
    assert failures == [], failures
    assert exit_status == 0, old_log.read_text()[-4000:]
    assert download.error is None, repr(download.error)
    assert download.lines == NOTES
    # Readiness went from 200 to 503 "stopping" while the old process still served, then
    # the port was refused, and the replacement answered 200 again.
    statuses = [status for status, _ in readiness.answers]
    first_503 = statuses.index(503)
    assert 200 in statuses[:first_503]
    assert b'"stopping"' in readiness.answers[first_503][1]
    assert None in statuses[first_503:]
    assert statuses[-1] == 200
    # Every client was served before the restart, during it, and by the replacement.
    served_after = sum(load.outcomes["ok"] for load in loads)
    assert 0 < served_before < served_by_old < served_after
