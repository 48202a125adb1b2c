"""The production server: `python -m app.ops.serve`, which `make serve` and the image run.

uvicorn without reload, with JSON logs (log-config.json), the client's address taken
from a trusted proxy's X-Forwarded-For (--proxy-headers), and WEB_CONCURRENCY worker
processes. uvicorn starts each worker as a fresh interpreter (multiprocessing's
"spawn"), which imports the app and calls `create_served_app()` there: every worker
builds its own engines and pools after it starts, and none is inherited across a fork.

Before any worker starts, the command checks the connection budget (app/ops/budget.py):
when the workers of every machine could open more connections than a database server
allows, it prints one line naming the numbers and the fix, and exits with status 1.

On SIGTERM each worker stops in three steps, so that a rolling restart loses nothing:

1. /health/ready answers 503 at once, and the worker keeps serving for DRAIN_DELAY
   seconds: time for the load balancer to see it and send new requests elsewhere;
2. it closes its listening socket and lets the requests in flight finish for up to
   GRACEFUL_TIMEOUT seconds, then cancels the rest, whose transactions roll back;
3. the lifespan disposes the engines, and the process exits with status 0.

The server's own settings come from the environment, not from .env:

    HOST              the address to listen on (127.0.0.1; the image sets 0.0.0.0)
    PORT              the port (8000)
    WEB_CONCURRENCY   how many worker processes (one per CPU this process may use)
    GRACEFUL_TIMEOUT  seconds the requests in flight get once the drain is over (10)
    DRAIN_DELAY       seconds a stopping worker keeps serving, answering 503 on
                      /health/ready (5; match the load balancer's probe interval)
"""

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from app.main import create_app
from app.ops.budget import budgeted_engines, connection_budgets
from app.ops.readiness import Readiness
from app.settings import Settings, SettingsError, get_settings

__all__ = ["ServerOptions", "ServerOptionsError", "create_served_app", "main"]

# Named, not __name__: run as `python -m app.ops.serve`, this module is __main__.
logger = logging.getLogger("app.ops.serve")

LOG_CONFIG = "log-config.json"


class ServerOptionsError(ValueError):
    """An environment variable of the server has a bad value; the message names the fix."""


@dataclass(frozen=True)
class ServerOptions:
    """How `python -m app.ops.serve` runs uvicorn."""

    host: str
    port: int
    workers: int
    graceful_timeout: int
    drain_delay: float

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "ServerOptions":
        host = environ.get("HOST", "127.0.0.1").strip()
        if not host:
            raise ServerOptionsError("HOST is empty: set it to an address such as 0.0.0.0")
        return cls(
            host=host,
            port=_whole(environ, "PORT", 8000, minimum=1, maximum=65535),
            workers=_whole(environ, "WEB_CONCURRENCY", _usable_cpus(), minimum=1),
            graceful_timeout=_whole(environ, "GRACEFUL_TIMEOUT", 10, minimum=0),
            drain_delay=_seconds(environ, "DRAIN_DELAY", 5.0),
        )


def create_served_app() -> FastAPI:
    """The app as each worker serves it: `create_app()`, draining on SIGTERM.

    uvicorn calls it in the worker, inside the worker's event loop and after installing
    its own signal handlers, which the drain wraps.
    """
    options = ServerOptions.from_environment()
    app = create_app()
    if options.drain_delay > 0:
        _drain_on_sigterm(app.state.readiness, options.drain_delay)
    return app


def _drain_on_sigterm(readiness: Readiness, delay: float) -> None:
    stop = signal.getsignal(signal.SIGTERM)
    if not callable(stop):
        raise RuntimeError(
            "create_served_app() is for uvicorn to call; run python -m app.ops.serve"
        )
    loop = asyncio.get_running_loop()

    def start_draining() -> None:
        if readiness.draining:
            return  # from the supervisor, and again when the whole process group is signalled
        readiness.drain()
        logger.info(
            "worker %d: SIGTERM: /health/ready answers 503 from now on; serving %g s more, "
            "then finishing the requests in flight",
            os.getpid(),
            delay,
        )
        loop.call_later(delay, stop, signal.SIGTERM, None)

    # A signal handler may interrupt the loop anywhere: it only hands the work to it.
    signal.signal(signal.SIGTERM, lambda signum, frame: loop.call_soon_threadsafe(start_draining))


class _Workers(Multiprocess):
    """uvicorn's supervisor of the worker processes, letting go of the port on SIGTERM."""

    def terminate_all(self) -> None:
        # Every worker holds its own copy of the listening socket and accepts through its
        # drain. The supervisor's copy would keep the port open after the last worker
        # stops accepting, queueing connections that are reset when it exits; closed,
        # a new connection is refused, which a client or load balancer retries elsewhere.
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def failed_to_start(self) -> bool:
        return any(process.exitcode == STARTUP_FAILURE for process in self.processes)


def main() -> None:
    try:
        options = ServerOptions.from_environment()
        # The workers read the same environment: the settings' WEB_CONCURRENCY is the
        # number of workers this machine runs, which the connection budget counts.
        os.environ["WEB_CONCURRENCY"] = str(options.workers)
        settings = get_settings()
    except (ServerOptionsError, SettingsError) as exc:
        sys.exit(f"error: {exc}")
    if not Path(LOG_CONFIG).is_file():
        sys.exit(
            f"error: no {LOG_CONFIG} in {Path.cwd()}; run python -m app.ops.serve in the project"
        )
    config = uvicorn.Config(
        "app.ops.serve:create_served_app",
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        log_config=LOG_CONFIG,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=options.graceful_timeout,
    )
    problems = asyncio.run(_budget_problems(settings))
    if problems:
        sys.exit("error: " + "; ".join(problems))
    if options.workers == 1:
        _serve_in_this_process(config)
        return
    workers = _Workers(config, sockets=[config.bind_socket()])
    workers.run()
    if workers.failed_to_start():
        sys.exit(STARTUP_FAILURE)


async def _budget_problems(settings: Settings) -> list[str]:
    """What does not fit in the database servers; the engines are gone when it returns."""
    engines = budgeted_engines(create_app(settings))
    try:
        budgets = await connection_budgets(engines, settings)
    finally:
        for engine in engines.values():
            await engine.dispose()
    problems = []
    for name, budget in budgets.items():
        if isinstance(budget, str):
            # Down now, perhaps up in a minute: /health/ready reports it meanwhile.
            logger.warning("connection budget of database %s not checked: %s", name, budget)
        elif not budget.fits:
            problems.append(budget.problem())
    return problems


def _serve_in_this_process(config: uvicorn.Config) -> None:
    server = uvicorn.Server(config)
    # Once it has shut down, uvicorn raises again the signal that stopped it, for the
    # handler that was there before it ran; without one, the process would die of
    # SIGTERM (status 143) after a clean stop, and a supervisor would call it a failure.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may run on, on Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _whole(
    environ: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int,
    maximum: int | None = None,
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    limits = f"from {minimum} to {maximum}" if maximum is not None else f"of {minimum} or more"
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum or (maximum is not None and value > maximum):
        raise ServerOptionsError(f"{name}={raw!r} is not valid: it must be a whole number {limits}")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ServerOptionsError(f"{name}={raw!r} is not valid: it must be seconds, 0 or more")
    return value


if __name__ == "__main__":
    main()
