"""Instructions per request of an ASGI app, counted by valgrind: a figure without noise.

On a shared two-core machine two servers of the same code differ by 10% or more in
req/s, so a change worth 5% cannot be seen in `make bench`. The number of instructions
the interpreter runs for a request does not depend on the machine's load: this calls the
app in-process (no server, no network) under cachegrind, once with 1 request and once
with 1 + N, and divides the difference by N, so startup and import cost cancel out.
A database the app reads is a server of its own, outside the count.

    python3 benchmarks/instructions.py --app-dir DIR --app app.main:create_app --factory \\
        --env DATABASE_URL=postgresql+asyncpg://... GET /health/live
    python3 benchmarks/instructions.py ... --body '{"email": "u{n}@example.com", ...}' POST /users

It needs valgrind (`apt-get install valgrind`) and the Python that runs the app
(`--python`, by default benchmarks/.venv's). The count covers the app's own work and
what it calls; uvicorn's HTTP parsing and writing, which every contestant pays alike, is
not in it. docs/performance.md quotes its figures.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
DEFAULT_PYTHON = BENCHMARKS / ".venv" / "bin" / "python"
# The requests made before counting starts, so that caches and pools exist in both runs.
WARM_UP = 200

# Run inside the app's interpreter: import the app, run its lifespan, call it in a loop.
_DRIVER = """
import asyncio, importlib, os, sys
sys.path.insert(0, os.getcwd())  # the app's directory, as uvicorn's --app-dir does
module, _, attribute = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module), attribute)
if sys.argv[2] == "factory":
    app = app()
method, path, count, body = sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
path, _, query = path.partition("?")
scope = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
    "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
    "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
statuses = []

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

# The scope of request `n` and its receive(). "{n}" in the body becomes the run's own
# counter, so that inserts by the two runs, which share a database, never collide.
def request(n):
    if not body:
        return {**scope, "state": {}}, receive
    content = body.replace("{n}", f"{os.getpid()}-{n}").encode()
    headers = [
        *scope["headers"],
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]

    async def receive_body():
        return {"type": "http.request", "body": content, "more_body": False}

    return {**scope, "headers": headers, "state": {}}, receive_body

async def send(message):
    if message["type"] == "http.response.start":
        statuses.append(message["status"])

async def main():
    started, stopped = asyncio.Event(), asyncio.Event()
    lifespan_messages = [{"type": "lifespan.startup"}]

    async def lifespan_receive():
        if lifespan_messages:
            return lifespan_messages.pop()
        await stopped.wait()
        return {"type": "lifespan.shutdown"}

    async def lifespan_send(message):
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith("failed"):
            raise SystemExit(message.get("message", "the lifespan failed"))

    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.ensure_future(app(lifespan_scope, lifespan_receive, lifespan_send))
    await started.wait()
    for n in range(count):
        await app(*request(n), send)
    stopped.set()
    await lifespan
    if set(statuses) - {200, 201, 204}:
        raise SystemExit(f"{method} {path} answered {sorted(set(statuses))}")

asyncio.run(main())
"""


def _instructions(arguments: argparse.Namespace, requests: int) -> int:
    """The instructions valgrind counted for one run of the driver making `requests`."""
    with tempfile.TemporaryDirectory() as scratch:
        driver = Path(scratch) / "driver.py"
        driver.write_text(_DRIVER)
        command = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            str(arguments.python), str(driver), arguments.app,
            "factory" if arguments.factory else "attribute",
            arguments.method, arguments.path, str(requests), arguments.body,
        ]  # fmt: skip
        environment = {**os.environ, "PYTHONHASHSEED": "0", **dict(arguments.env)}
        completed = subprocess.run(
            command, cwd=arguments.app_dir, env=environment, capture_output=True, text=True
        )
    counted = re.search(r"I\s+refs:\s+([\d,]+)", completed.stderr)
    if completed.returncode != 0 or counted is None:
        sys.exit(f"the app's run failed:\n{completed.stderr[-3000:]}")
    return int(counted.group(1).replace(",", ""))


def _variable(text: str) -> tuple[str, str]:
    name, sign, value = text.partition("=")
    if not sign:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", help="GET, for instance")
    parser.add_argument("path", help="the path, with its query string if any")
    parser.add_argument("--app", required=True, help="module:attribute, as uvicorn takes it")
    parser.add_argument("--factory", action="store_true", help="the attribute makes the app")
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="where to import it")
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON)
    parser.add_argument("--env", type=_variable, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--body",
        default="",
        help='a JSON body for each request; "{n}" in it becomes a counter, for unique values',
    )
    parser.add_argument("--requests", type=int, default=2000, help="counted requests (2000)")
    arguments = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing: apt-get install valgrind")
    # Both runs at once, one per core; each count is the same whatever runs beside it.
    with ThreadPoolExecutor(2) as pool:
        short = pool.submit(_instructions, arguments, WARM_UP + 1)
        long = pool.submit(_instructions, arguments, WARM_UP + 1 + arguments.requests)
        difference = long.result() - short.result()
    per_request = difference / arguments.requests
    print(f"{arguments.method} {arguments.path}: {per_request:,.0f} instructions per request")


if __name__ == "__main__":
    main()
