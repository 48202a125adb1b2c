"""Helpers for the tests that run a baked service under a real server.

A free loopback port, the HTTP status a URL answers with, waiting until a server
answers, and a database of the test's own on a PostgreSQL or MariaDB server.
"""

import asyncio
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

__all__ = ["free_port", "new_database", "status_of", "wait_until_answering"]

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+aiomysql"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def status_of(url: str, *, timeout: float = 2) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_until_answering(
    url: str, server: subprocess.Popen[bytes], log: Path, *, deadline: float
) -> None:
    """Return once `url` answers 200; fail with the server's log if it exits or time runs out."""
    give_up = time.monotonic() + deadline
    while status_of(url) != 200:
        if server.poll() is not None or time.monotonic() > give_up:
            raise AssertionError(f"{url} did not answer 200:\n{log.read_text()[-6000:]}")
        time.sleep(0.2)


@contextmanager
def new_database(server: str, label: str) -> Iterator[URL]:
    """The URL of a new, empty database on the `server` given, dropped when the block ends."""
    url = make_url(server)
    backend = url.get_backend_name().replace("mariadb", "mysql")
    url = url.set(drivername=_ASYNC_DRIVERS[backend])
    name = f"{label}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(url, f"CREATE DATABASE {name}"))
    try:
        yield url.set(database=name)
    finally:
        force = " WITH (FORCE)" if backend == "postgresql" else ""
        asyncio.run(_execute(url, f"DROP DATABASE {name}{force}"))


async def _execute(url: URL, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()
