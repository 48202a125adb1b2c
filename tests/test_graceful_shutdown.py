"""SIGTERM with a stalled export reader and a download in flight: a bounded, clean exit.

A baked service on PostgreSQL runs under `python -m app.ops.serve`, the image's command, with
its default graceful timeout. One client never reads its export; another is downloading
the export when SIGTERM arrives. The download must complete, the process must exit 0
within the timeout plus a margin, and no backend may be left `idle in transaction`,
neither while the stalled client waits nor afterwards.
"""

import asyncio
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url

from tests.conftest import BIN, Bake, run, server_url
from tests.servers import free_port, new_database, wait_until_answering

# Enough NDJSON (about 10 MB) that the stalled client's socket buffers fill up.
NOTES = 10_000
# Beyond the graceful timeout: the lifespan's shutdown and the interpreter's exit.
MARGIN = 5
STARTUP_DEADLINE = 30


def _graceful_timeout(project: Path) -> int:
    """The graceful timeout that `python -m app.ops.serve` (the image's command) and make use."""
    makefile = (project / "Makefile").read_text()
    found = re.search(r"^GRACEFUL_TIMEOUT \?= (\d+)$", makefile, re.MULTILINE)
    assert found is not None, "the Makefile sets no GRACEFUL_TIMEOUT"
    assert "--timeout-graceful-shutdown $(GRACEFUL_TIMEOUT)" in makefile  # make dev
    show = "from app.ops.serve import ServerOptions; print(ServerOptions.from_environment({}))"
    default = run("python", "-c", show, cwd=project)
    assert f"graceful_timeout={found.group(1)}," in default.stdout, default.stdout + default.stderr
    return int(found.group(1))


async def _seed(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        author = uuid.uuid4()
        await connection.execute(
            "INSERT INTO users (id, email, username, full_name, preferences)"
            " VALUES ($1, 'author@example.com', 'author', '', '{}')",
            author,
        )
        await connection.execute(
            "INSERT INTO notes (user_id, title, body)"
            " SELECT $1, 'note ' || n, repeat('x', 1000) FROM generate_series(1, $2) AS n",
            author,
            NOTES,
        )
    finally:
        await connection.close()


async def _idle_in_transaction(url: str) -> int:
    """How many backends of `url`'s database sit idle inside a transaction."""
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        )
        return count
    finally:
        await connection.close()


def _stalled_export(port: int) -> socket.socket:
    """A client that asks for the export, reads the status line, and then reads no more."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up sooner
    client.connect(("127.0.0.1", port))
    client.sendall(b"GET /export/notes HTTP/1.1\r\nHost: test\r\n\r\n")
    status = client.recv(64)
    assert status.startswith(b"HTTP/1.1 200"), status
    return client


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
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            connection.request("GET", "/export/notes")
            response = connection.getresponse()
            body = response.read(65536)
            self.started.set()
            self.resume.wait(timeout=30)
            body += response.read()  # raises IncompleteRead if the stream is cut short
            self.lines = body.count(b"\n")
            connection.close()
        except BaseException as exc:  # reported by the test, in its own thread
            self.error = exc
            self.started.set()


def test_sigterm_finishes_downloads_and_exits_within_the_graceful_timeout(
    bake: Bake, tmp_path: Path
) -> None:
    server = make_url(server_url("TEST_DATABASE_URL", "PostgreSQL"))
    if server.get_backend_name() != "postgresql":
        pytest.fail(f"TEST_DATABASE_URL must name a PostgreSQL server, not {server.drivername}")
    project = bake()
    graceful_timeout = _graceful_timeout(project)
    with new_database(server.render_as_string(hide_password=False), "graceful") as database:
        url = database.set(drivername="postgresql").render_as_string(hide_password=False)
        env = {"DATABASE_URL": url, "EXPORT_SEND_TIMEOUT": "60"}
        migrated = run("python", "-m", "app.ops.migrate", "upgrade", cwd=project, env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        asyncio.run(_seed(url))

        port = free_port()
        log = tmp_path / "uvicorn.log"
        with log.open("w") as output:
            # The production command, in one process and with no drain before the
            # graceful shutdown: tests/test_rolling_restart.py covers the drain.
            server_env = {"PORT": str(port), "WEB_CONCURRENCY": "1", "DRAIN_DELAY": "0"}
            service = subprocess.Popen(
                [BIN / "python", "-m", "app.ops.serve"],
                cwd=project,
                env={**os.environ, **env, **server_env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stalled = None
        try:
            live = f"http://127.0.0.1:{port}/health/live"
            wait_until_answering(live, service, log, deadline=STARTUP_DEADLINE)
            stalled = _stalled_export(port)
            download = _Download(port)
            download.start()
            assert download.started.wait(timeout=10)
            time.sleep(1)  # the stalled client's buffers fill, and the export waits on it
            idle_while_stalled = asyncio.run(_idle_in_transaction(url))

            signalled = time.monotonic()
            os.killpg(service.pid, signal.SIGTERM)
            download.resume.set()
            try:
                service.wait(timeout=graceful_timeout + MARGIN)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"still running {graceful_timeout + MARGIN} s after SIGTERM:\n"
                    + log.read_text()[-4000:]
                )
            exited_after = time.monotonic() - signalled
            download.join(timeout=10)
        finally:
            if service.poll() is None:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait()
            if stalled is not None:
                stalled.close()

        assert idle_while_stalled == 0
        assert download.error is None, repr(download.error)
        assert download.lines == NOTES
        assert exited_after < graceful_timeout + MARGIN
        assert service.returncode == 0, log.read_text()[-4000:]
        assert asyncio.run(_idle_in_transaction(url)) == 0
