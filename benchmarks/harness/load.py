"""Load from wrk on loopback: warm-ups, and measured slices with the server's CPU time."""

import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CONNECTIONS, HOST
from .contestants import Route
from .server import Server

__all__ = ["WRK_OPTIONS", "Sample", "Slice", "combine", "load_slice", "warm_up"]

# Far above any latency a contestant should show, so that slow requests are
# counted in the percentiles instead of being dropped as wrk timeouts.
TIMEOUT_SECONDS = 10
SCRIPT = Path(__file__).resolve().parent / "report.lua"
# One thread is enough for one core, and no wrk thread competes with another.
WRK_OPTIONS = (
    "--threads", "1", "--connections", str(CONNECTIONS), "--timeout", f"{TIMEOUT_SECONDS}s",
)  # fmt: skip


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


@dataclass(frozen=True)
class Slice:
    """One wrk run against one server: what it counted and the server's CPU time meanwhile."""

    requests: int
    seconds: float
    cpu_seconds: float
    errors: int
    # The latency in microseconds at every 1/len(quantiles) of the requests, ascending.
    quantiles: tuple[int, ...]


def _wrk(server: Server, route: Route, *, seconds: int, cpu: int) -> dict[str, Any]:
    body = route.tagged_body()
    env = {**os.environ, "BENCH_METHOD": route.method, **({"BENCH_BODY": body} if body else {})}
    command = [
        "taskset", "-c", str(cpu),
        "wrk", *WRK_OPTIONS, "--duration", f"{seconds}s", "--script", str(SCRIPT),
        f"http://{HOST}:{server.port}{route.path}",
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


def warm_up(server: Server, route: Route, *, seconds: int, cpu: int) -> None:
    """Load `route` for `seconds` without measuring, so pools and caches are filled."""
    _wrk(server, route, seconds=seconds, cpu=cpu)


def load_slice(server: Server, route: Route, *, seconds: int, cpu: int) -> Slice:
    """Load `route` for `seconds` and read the server's CPU time around it."""
    cpu_before = server.cpu_seconds()
    result = _wrk(server, route, seconds=seconds, cpu=cpu)
    return Slice(
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        cpu_seconds=server.cpu_seconds() - cpu_before,
        errors=sum(result["errors"].values()),
        quantiles=tuple(result["quantiles"]),
    )


def combine(slices: Iterable[Slice]) -> Sample:
    """One sample from several slices: their totals, and percentiles of their merged latencies."""
    slices = list(slices)
    # Each quantile point stands for its share of its slice's requests.
    weighted = sorted(
        (latency, part.requests / len(part.quantiles))
        for part in slices
        for latency in part.quantiles
    )
    return Sample(
        requests=sum(part.requests for part in slices),
        seconds=sum(part.seconds for part in slices),
        p50_ms=_percentile(weighted, 50) / 1e3,
        p99_ms=_percentile(weighted, 99) / 1e3,
        cpu_seconds=sum(part.cpu_seconds for part in slices),
        errors=sum(part.errors for part in slices),
    )


def _percentile(weighted: list[tuple[int, float]], percent: float) -> float:
    """The lowest latency at or below which `percent` of the weighted requests fall."""
    wanted = percent / 100 * sum(weight for _, weight in weighted)
    seen = 0.0
    for latency, weight in weighted:
        seen += weight
        # A tolerance for the float sums, so that one slice reproduces wrk's own figures.
        if seen >= wanted * (1 - 1e-9) and seen > 0:
            return latency
    return 0.0
