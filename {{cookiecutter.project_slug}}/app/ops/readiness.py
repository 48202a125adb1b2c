"""Readiness: whether each database can serve now, in words fit for an operator.

A database is ready when it answers within the deadline, its pool can lend a
connection, and it is at the code's head revision. The service starts whatever the
answer: a database that is down, behind or ahead is reported by /health/ready (503,
naming it) and in the log, and becomes ready without a restart once it is fixed.

A read replica is reported too, but never makes the service unready: while it is down
or lagging, its reads go to the primary, which serves them.
"""

import asyncio
import logging
import time
from collections.abc import Mapping

import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import DatabaseUnavailableError, has_free_connection
from app.db.replica import Replica
from app.ops.migrate import revision_problem

__all__ = ["READY", "Readiness", "unreachable"]

READY = "ok"

logger = logging.getLogger(__name__)


class Readiness:
    """Checks every database on demand; `await readiness.check()` maps each name to a state.

    Every check pings each database (one `SELECT 1`). The revision check reads the
    migration scripts and `alembic_version`, so once a database is at head that verdict
    is kept for `recheck_after` seconds and frequent probes stay cheap; a database that
    is not at head is looked at again on every check, so it is ready at the first probe
    after `make migrate`. A change of state is logged once, not on every probe.
    """

    def __init__(
        self,
        engines: Mapping[str, AsyncEngine],
        *,
        deadline: float,
        recheck_after: float = 30.0,
        replica: Replica | None = None,
    ) -> None:
        self.engines = dict(engines)
        self.replica = replica
        self.deadline = deadline
        self.recheck_after = recheck_after
        self._at_head_until: dict[str, float] = {}
        self._last: dict[str, str] = {}
        # Set once the process is stopping (SIGTERM under `python -m app.ops.serve`).
        self.draining = False

    def drain(self) -> None:
        """Report not ready from now on, whatever the databases say: the process is stopping.

        The process still serves; /health/ready answers 503 so that the load balancer
        sends the next requests to another replica before this one stops accepting.
        """
        self.draining = True

    async def check(self) -> dict[str, str]:
        """Each database's state: "ok", or why it cannot serve."""
        names = list(self.engines)
        states = await asyncio.gather(*(self._state(name) for name in names))
        for name, state in zip(names, states, strict=True):
            self._log_change(name, state)
        return dict(zip(names, states, strict=True))

    async def check_replica(self) -> str | None:
        """The read replica's state ("ok", "down: ...", "lagging: ..."), None without one."""
        return None if self.replica is None else await self.replica.check()

    async def _state(self, name: str) -> str:
        engine = self.engines[name]
        try:
            async with asyncio.timeout(self.deadline):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                    if time.monotonic() < self._at_head_until.get(name, 0.0):
                        return READY
                    problem = await revision_problem(connection, database=name)
        except (TimeoutError, sqlalchemy.exc.TimeoutError):
            if not has_free_connection(engine.pool):
                return "pool exhausted: every connection is in use"
            return f"no answer within {self.deadline:g} s"
        except (OSError, sqlalchemy.exc.DBAPIError) as exc:
            return unreachable(exc)
        except Exception as exc:
            # Not the database's state but a fault in the check itself: keep its traceback.
            logger.exception("the readiness check of the %s database failed", name)
            return f"check failed ({type(exc).__name__})"
        if problem is not None:
            self._at_head_until.pop(name, None)
            return problem
        self._at_head_until[name] = time.monotonic() + self.recheck_after
        return READY

    def _log_change(self, name: str, state: str) -> None:
        if self._last.get(name) == state:
            return
        first = name not in self._last
        self._last[name] = state
        where = self.engines[name].url.render_as_string(hide_password=True)
        if state != READY:
            logger.warning(
                "database %s (%s) is not ready: %s; /health/ready answers 503 until it is",
                name,
                where,
                state,
            )
        elif not first:
            logger.info("database %s (%s) is ready again", name, where)


def unreachable(exc: BaseException) -> str:
    """The state of a database whose connection or check failed with `exc`.

    The class name only, the driver's for a connect that failed: driver messages can
    carry the host, user or URL, and the state is shown to whoever asks /health/ready.
    """
    reason = exc.reason if isinstance(exc, DatabaseUnavailableError) else type(exc).__name__
    return f"unreachable ({reason})"
