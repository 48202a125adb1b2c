"""A contestant's uvicorn process, pinned to one core, its CPU time and memory read from /proc."""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import DATABASE_URL_VARIABLE, HOST
from .contestants import BENCHMARKS, Contestant, Route

__all__ = ["UVICORN_OPTIONS", "Server", "ServerError", "request", "running", "set_up"]

STARTUP_SECONDS = 30
# The same server settings for every contestant: one worker, as fast as uvicorn goes.
UVICORN_OPTIONS = (
    "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
)  # fmt: skip
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """The contestant did not start, or answered a check request wrongly.

    The first line says what happened, ending with the last line of the server's
    output (usually the exception); the output's tail follows.
    """

    def __init__(self, message: str, output: str = "") -> None:
        lines = output.strip().splitlines()[-25:]
        super().__init__(
            "\n".join([f"{message}: {lines[-1].strip()}", *lines]) if lines else message
        )


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.pid = process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server process, all threads included."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # utime and stime are fields 14 and 15 of proc(5): 11 and 12 after the command.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def memory_kib(self, field: str) -> int:
        """A memory figure from /proc/<pid>/status, such as VmRSS or VmHWM, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise ServerError(f"/proc/{self.pid}/status has no {field} line")

    def reset_peak_memory(self) -> None:
        """Make VmHWM start again from the current resident size (proc(5), clear_refs)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


def request(port: int, route: Route) -> Any:
    """Send `route` once and return its decoded JSON, or raise ServerError."""
    # A fresh tag per check, since every round checks the insert again.
    body = route.tagged_body()
    body = body.replace("{n}", "0") if body else None
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body else {}
        connection.request(route.method, route.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    asked = f"{route.method} {route.path}"
    if response.status != route.status:
        raise ServerError(
            f"{asked} answered {response.status}, expected {route.status}: {payload[:300]!r}"
        )
    try:
        decoded = json.loads(payload)
    except ValueError as error:
        raise ServerError(f"{asked} answered with no JSON: {payload[:300]!r}") from error
    if route.length is not None:
        items = decoded.get(route.items) if route.items and isinstance(decoded, dict) else decoded
        if not isinstance(items, list) or len(items) != route.length:
            found = f"{len(items)} items" if isinstance(items, list) else "no list"
            where = f" in {route.items!r}" if route.items else ""
            raise ServerError(f"{asked} returned {found}{where}, expected {route.length}")
    return decoded


def _environment(contestant: Contestant, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        DATABASE_URL_VARIABLE: database_url,
        # benchmarks/ for `harness.config`, which the apps import.
        "PYTHONPATH": os.pathsep.join(str(path) for path in (BENCHMARKS, *contestant.path)),
        **contestant.env,
    }


def set_up(contestant: Contestant, *, database_url: str) -> None:
    """Run the contestant's setup command, such as its migrations; ServerError if it fails."""
    if not contestant.setup:
        return
    completed = subprocess.run(
        [sys.executable, *contestant.setup],
        cwd=contestant.app_dir,
        env=_environment(contestant, database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise ServerError(
            f"setup {' '.join(contestant.setup)} failed", completed.stdout + completed.stderr
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_ready(server: Server, probe: Route, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            problem = f"exited with code {server.process.returncode}"
            break
        try:
            request(server.port, probe)
        except (ConnectionError, http.client.HTTPException, TimeoutError):
            time.sleep(0.1)
        else:
            return
    else:
        problem = f"did not answer within {STARTUP_SECONDS} s"
    raise ServerError(problem, log.read_text(errors="replace"))


@contextlib.contextmanager
def running(contestant: Contestant, *, cpu: int, database_url: str) -> Iterator[Server]:
    """Start the contestant under uvicorn on core `cpu`, wait until it answers, stop it after."""
    port = _free_port()
    command = [
        "taskset", "-c", str(cpu),
        sys.executable, "-m", "uvicorn", contestant.target,
        "--app-dir", str(contestant.app_dir),
        "--host", HOST, "--port", str(port),
        *UVICORN_OPTIONS, "--log-level", "warning",
        *(["--factory"] if contestant.factory else []),
    ]  # fmt: skip
    with tempfile.NamedTemporaryFile(prefix=f"bench-{contestant.key}-", suffix=".log") as log:
        process = subprocess.Popen(
            command,
            cwd=contestant.app_dir,
            env=_environment(contestant, database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            server = Server(process, port)
            _wait_until_ready(server, contestant.routes["no-db"], Path(log.name))
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
