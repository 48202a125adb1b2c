"""The settings every contestant shares, defined once for the harness and the apps in `apps/`.

Standard library only: run.py and the apps import it too (the harness puts `benchmarks/`
on the apps' path).
"""

from typing import Any

__all__ = [
    "CONNECTIONS",
    "DATABASE_URL_VARIABLE",
    "DEFAULT_DATABASE_URL",
    "ENGINE_ARGS",
    "HOST",
    "LIST_SIZE",
    "PEER_PACKAGE",
    "PEER_VERSION",
    "POOL_SIZE",
]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench"
# The harness gives every app in `apps/` its SQLAlchemy URL in this variable.
DATABASE_URL_VARIABLE = "BENCH_DATABASE_URL"
# Where the servers listen and wrk connects.
HOST = "127.0.0.1"

# One pool that never grows, and twice as many wrk connections, so that requests queue
# for the pool and the tail latency shows how each contestant behaves when they do.
POOL_SIZE = 10
ENGINE_ARGS: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": 0}
CONNECTIONS = 2 * POOL_SIZE

# Rows per answer of the list endpoint.
LIST_SIZE = 50

# The release of the peer that the figures and the docs compare against.
PEER_PACKAGE = "fastapi-async-sqlalchemy"
PEER_VERSION = "0.8.1"
