"""The exports' benchmark: rows per second through the real server, and its memory growth."""

import contextlib
import http.client
import time
from dataclasses import dataclass

from .config import HOST
from .contestants import Contestant, Route
from .server import Server, ServerError, request, running

__all__ = ["MemorySample", "measure_export"]

CHUNK = 64 * 1024
EXPORT_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class MemorySample:
    rows: int
    seconds: float
    rss_before_mb: float
    peak_mb: float

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.rss_before_mb

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _stream(server: Server, path: str) -> int:
    """Read the whole body, keeping none of it, and count its lines."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {response.read(300)!r}")
        deadline = time.monotonic() + EXPORT_TIMEOUT_SECONDS
        lines = 0
        while chunk := response.read(CHUNK):
            lines += chunk.count(b"\n")
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET {path} took longer than {EXPORT_TIMEOUT_SECONDS} s")
        return lines
    finally:
        connection.close()


def measure_export(
    contestant: Contestant, export: Route, *, cpu: int, database_url: str, header_lines: int = 0
) -> MemorySample:
    """Stream `export` from the contestant once and report its rows per second and how far
    its resident memory rose; the first `header_lines` lines (a CSV header) are no rows."""
    with running(contestant, cpu=cpu, database_url=database_url) as server:
        # Let the first database request build the pool, the dialect and its
        # caches, so that the growth measured is the export's own.
        for route in contestant.routes.values():
            # A route that fails here is reported by the rounds; the export may still run.
            if route.method == "GET":
                with contextlib.suppress(ServerError):
                    request(server.port, route)
        before = server.memory_kib("VmRSS")
        server.reset_peak_memory()
        started = time.monotonic()
        rows = _stream(server, export.path) - header_lines
        seconds = time.monotonic() - started
        peak = server.memory_kib("VmHWM")
    return MemorySample(
        rows=rows, seconds=seconds, rss_before_mb=before * 1024 / 1e6, peak_mb=peak * 1024 / 1e6
    )
