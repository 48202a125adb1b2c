"""CPU per request with the contestants' apps side by side in one process.

wrk against separate servers measures the whole stack, but two servers of the
same code come out several percent apart (the noise floor under the main table),
which hides the small differences between session layers. Here the apps share
one interpreter, one event loop and one core: each endpoint is driven by 20
concurrent in-process clients, in batches that take turns between the apps, and
the process's own CPU time is read around every batch. No HTTP server is
involved; what differs between the apps is exactly their session handling.

The harness runs this module in a subprocess (`measure_in_process`), with the
contestants' apps and the baked project on its path, and reads one JSON line.
"""

import argparse
import asyncio
import contextlib
import importlib
import itertools
import json
import os
import resource
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .config import DATABASE_URL_VARIABLE
from .contestants import APPS, BENCHMARKS, ENDPOINTS, Contestant, Route

__all__ = ["BATCH_REQUESTS", "CLIENTS", "Figures", "measure_in_process"]

CLIENTS = 20
BATCH_REQUESTS = 400
WARMUP_REQUESTS = 200
TIMEOUT_SECONDS = 600

App = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]
# Contestant key -> endpoint -> {"requests": ..., "cpu_seconds": ...}
Figures = dict[str, dict[str, dict[str, float]]]


def _runs_in_process(contestant: Contestant) -> bool:
    """Whether the contestant is one of the apps in `apps/`, served from a module of its own."""
    return contestant.app_dir == APPS and not contestant.factory


def measure_in_process(
    chosen: list[Contestant], *, project: Path, batches: int, cpu: int, database_url: str
) -> Figures:
    """Run this module on core `cpu` for the contestants that are apps in `apps/`, with
    `batches` batches of BATCH_REQUESTS requests per app and endpoint."""
    modules: dict[str, str] = {}
    for contestant in chosen:
        module = contestant.target.partition(":")[0]
        # A second server of an app already in the list adds nothing in one process.
        if _runs_in_process(contestant) and module not in modules.values():
            modules[contestant.key] = module
    routes = {
        c.key: {endpoint: asdict(route) for endpoint, route in c.routes.items()}
        for c in chosen
        if c.key in modules
    }
    command = [
        "taskset", "-c", str(cpu), sys.executable, "-m", "harness.inprocess",
        "--batches", str(batches), json.dumps(modules), json.dumps(routes),
    ]  # fmt: skip
    environment = {
        **os.environ,
        DATABASE_URL_VARIABLE: database_url,
        "PYTHONPATH": os.pathsep.join([str(APPS), str(BENCHMARKS), str(project)]),
    }
    completed = subprocess.run(
        command,
        cwd=APPS.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the in-process run failed:\n{completed.stderr.strip()}")
    figures: Figures = json.loads(completed.stdout.splitlines()[-1])
    return figures


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _request(app: App, route: Route, body: bytes) -> int:
    """One request straight into the ASGI app; its response status."""
    path, _, query = route.path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": route.method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80), "state": {},
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json")],
    }  # fmt: skip
    delivered = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def _load(app: App, route: Route, requests: int) -> None:
    """`requests` requests from CLIENTS concurrent clients, each waiting for its answer."""
    tag = uuid.uuid4().hex[:8]
    numbers = itertools.count()
    template = (route.body or "").replace("{tag}", tag)

    async def client() -> None:
        for _ in range(requests // CLIENTS):
            body = template.replace("{n}", str(next(numbers))).encode()
            status = await _request(app, route, body)
            if status != route.status:
                raise RuntimeError(f"{route.method} {route.path} answered {status}")

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


@contextlib.asynccontextmanager
async def _lifespan(app: App) -> AsyncIterator[None]:
    """Start the app's lifespan (its engine or pool) and shut it down afterwards."""
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup") and not started.done():
            started.set_result(message)

    await messages.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, messages.get, send))
    answer = await started
    if answer["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {answer.get('message', answer['type'])}")
    try:
        yield
    finally:
        await messages.put({"type": "lifespan.shutdown"})
        await task


async def _measure(
    modules: dict[str, str], routes: dict[str, dict[str, Route]], batches: int
) -> Figures:
    apps: dict[str, App] = {key: importlib.import_module(m).app for key, m in modules.items()}
    figures: Figures = {key: {} for key in apps}
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(_lifespan(app))
        for endpoint in ENDPOINTS:
            for key, app in apps.items():
                await _load(app, routes[key][endpoint], WARMUP_REQUESTS)
            spent = dict.fromkeys(apps, 0.0)
            for batch in range(batches):
                for key in list(apps)[:: 1 if batch % 2 == 0 else -1]:
                    before = _cpu_seconds()
                    await _load(apps[key], routes[key][endpoint], BATCH_REQUESTS)
                    spent[key] += _cpu_seconds() - before
            for key in apps:
                figures[key][endpoint] = {
                    "requests": batches * BATCH_REQUESTS,
                    "cpu_seconds": spent[key],
                }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.inprocess", description=__doc__)
    parser.add_argument("--batches", type=int, required=True, help="batches per app and endpoint")
    parser.add_argument("modules", help="JSON: contestant key -> module of its app")
    parser.add_argument("routes", help="JSON: contestant key -> endpoint -> route")
    arguments = parser.parse_args()
    modules: dict[str, str] = json.loads(arguments.modules)
    routes = {
        key: {endpoint: Route(**fields) for endpoint, fields in endpoints.items()}
        for key, endpoints in json.loads(arguments.routes).items()
    }
    try:
        import uvloop  # the servers run on it too
    except ImportError:
        figures = asyncio.run(_measure(modules, routes, arguments.batches))
    else:
        figures = uvloop.run(_measure(modules, routes, arguments.batches))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
