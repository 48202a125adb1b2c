"""Load from wrk on loopback: a warm-up, then a measured period with the server's CPU time."""

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contestants import Route
from .server import Server

__all__ = ["CONNECTIONS", "Sample", "measure"]

CONNECTIONS = 20
# Far above any latency a contestant should show, so that slow requests are
# counted in the percentiles instead of being dropped as wrk timeouts.
TIMEOUT_SECONDS = 10
SCRIPT = Path(__file__).resolve().parent / "report.lua"


@dataclass(frozen=True)
class Sample:
    """One measured period of one endpoint on one contestant."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.requests else float("inf")


def _wrk(server: Server, route: Route, *, seconds: int, cpu: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_METHOD": route.method,
        # A fresh tag per run keeps inserted values unique across runs.
        **({"BENCH_BODY": route.body.replace("{tag}", uuid.uuid4().hex[:8])} if route.body else {}),
    }
    command = [
        "taskset", "-c", str(cpu),
        "wrk", "--threads", "1", "--connections", str(CONNECTIONS),
        "--duration", f"{seconds}s", "--timeout", f"{TIMEOUT_SECONDS}s",
        "--script", str(SCRIPT),
        f"http://127.0.0.1:{server.port}{route.path}",
    ]  # fmt: skip
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    output = completed.stdout + completed.stderr
    raise RuntimeError(f"wrk printed no result (exit {completed.returncode}):\n{output}")


def measure(server: Server, route: Route, *, warmup: int, seconds: int, cpu: int) -> Sample:
    """Warm the endpoint up, then load it for `seconds` and read the server's CPU time around it."""
    _wrk(server, route, seconds=warmup, cpu=cpu)
    cpu_before = server.cpu_seconds()
    result = _wrk(server, route, seconds=seconds, cpu=cpu)
    cpu_after = server.cpu_seconds()
    return Sample(
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1e3,
        p99_ms=result["p99_us"] / 1e3,
        cpu_seconds=cpu_after - cpu_before,
        errors=sum(result["errors"].values()),
    )
