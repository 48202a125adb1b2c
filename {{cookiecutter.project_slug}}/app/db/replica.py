"""Read replicas: the reads that are safe go to a PostgreSQL streaming replica.

An opt-in part of the layer: nothing else in `app/db` imports it, and a copy of the folder
that needs no replica can delete it. Sessions route reads when their factory is made
with the replica's options:

    replica = Replica("postgresql://...replica...")
    app.add_middleware(SQLAlchemyMiddleware, db_url=..., session_args=replica.session_args())

and whatever owns the app's lifespan starts its health checks and disposes it
(`replica.start_monitoring()`, `await replica.dispose()`).

A session made with a `Replica` sends a statement to the replica only when all hold:

- it is a SELECT run through the session (`text()` is not recognised as a read and goes
  to the primary), and does not stream (`yield_per`). A SELECT ... FOR UPDATE or FOR
  SHARE is refused by the replica, which takes no locks, and runs on the primary;
- it does not carry the `PRIMARY` execution option;
- the session has not written yet: no flush, no INSERT/UPDATE/DELETE, no FOR UPDATE, no
  `session.connection()`, no `use_primary()`, and nothing pending that autoflush would
  write first. From the first write on, every statement of the session goes to the
  primary, also after a commit, so a unit of work reads its own writes;
- the session is not inside a SAVEPOINT;
- the replica's last check found it streaming and at most `max_lag` seconds behind.

Everything else (writes, flushes, migrations, which run on the primary's engine) uses
the session's own bind. A read that fails on the replica because it is unreachable,
shutting down or cancelled by replay is run again on the primary, the replica is
marked down until its next check, and the session reads from the primary from then on.

Replica connections run in autocommit, so each read sees the replica's latest state and
holds no transaction open there (which would delay replay), and the session joins them
as connections it never commits: a replica that dies after a read cannot fail a commit.
"""

import asyncio
import logging
import time
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from ._engine import create_engine
from ._errors import DatabaseUnavailableError
from ._listeners import LayerSession

__all__ = ["PRIMARY", "Replica", "use_primary"]

logger = logging.getLogger(__name__)

# `select(...).execution_options(**PRIMARY)`: this statement reads from the primary.
PRIMARY = {"primary": True}
(_PRIMARY_OPTION,) = PRIMARY

READY = "ok"
_NOT_CHECKED = "not checked yet"
# Keys in `session.info`: the replica of the session, and whether it must use the primary.
_REPLICA = "replica"
_ON_PRIMARY = "replica.use_primary"
_CONNECTION = "replica.connection"

# SQLSTATEs of a replica that cannot serve the read, though the primary can: it is
# shutting down or starting (57P01-57P03), or replay cancelled the query (40001).
_REPLICA_FAULTS = frozenset({"57P01", "57P02", "57P03", "40001"})
# What a replica answers a locking read (FOR UPDATE, FOR SHARE): a read-only transaction
# takes no row locks. A statement keeps no public record of its lock, so this is how the
# routing learns of one.
_READ_ONLY = "25006"

# Errors of the server or the connection, not of the statement: the primary may succeed.
_FAULT_CLASSES = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.InternalError,
)

_STATE_QUERY = text(
    "SELECT pg_is_in_recovery(), CASE"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
)


class Replica:
    """A streaming replica of a middleware's database, and what its last check found.

    `target` is a URL (the replica then owns the engine made from it and disposes it) or
    an `AsyncEngine` of the caller's. Reads go to it only while `state` is "ok": a check
    found it in recovery and at most `max_lag` seconds behind its primary. Until the
    first check, and while it is down or lagging, reads use the primary.

    `start_monitoring()` checks it every `check_interval` seconds until `dispose()`;
    `await replica.check()` checks it now (readiness probes do).
    """

    def __init__(
        self,
        target: str | URL | AsyncEngine,
        *,
        max_lag: float = 5.0,
        check_interval: float = 2.0,
        check_timeout: float = 2.0,
        engine_args: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(target, AsyncEngine):
            if engine_args:
                raise ValueError(
                    "engine_args only apply to the engine made from a replica URL; configure "
                    "an AsyncEngine where you create it."
                )
            engine, self.owns_engine = target, False
        else:
            engine, self.owns_engine = create_engine(target, engine_args), True
        if engine.dialect.name != "postgresql":
            raise ValueError(
                f"Read replicas are supported on PostgreSQL only, not {engine.dialect.name}: "
                "give a postgresql:// replica URL, or none."
            )
        self._engine = engine
        # Autocommit: see the module docstring. The option engine shares the pool.
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sync_engine = self.engine.sync_engine
        self.max_lag = max_lag
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.state = _NOT_CHECKED
        self._monitor: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Replica {self._engine.url.render_as_string()} ({self.state})>"

    @property
    def usable(self) -> bool:
        return self.state == READY

    def session_args(self, sync_session_class: type[Session] = LayerSession) -> dict[str, Any]:
        """Session options under which a factory's sessions send their safe reads here.

        Pass them as a middleware's or `create_session_factory()`'s `session_args`, with any
        options of your own; `sync_session_class` is the class the routing extends.
        """
        return {
            "sync_session_class": _routing_session_class(sync_session_class),
            "info": {_REPLICA: self},
        }

    async def check(self) -> str:
        """Look at the replica now; the new `state` decides where the next reads go."""
        try:
            async with asyncio.timeout(self.check_timeout):
                async with self.engine.connect() as connection:
                    in_recovery, lag = (await connection.execute(_STATE_QUERY)).one()
        except (TimeoutError, sqlalchemy.exc.TimeoutError):
            state = f"down: no answer within {self.check_timeout:g} s"
        except Exception as exc:
            # A refused connection, or the driver's own error for a server that is starting
            # or shutting down; never a reason to fail a readiness probe. The class name
            # only (the driver's, for a failed connect): driver messages can carry the
            # host, user or URL.
            name = exc.reason if isinstance(exc, DatabaseUnavailableError) else type(exc).__name__
            state = f"down: unreachable ({name})"
        else:
            if not in_recovery:
                state = "down: not in recovery, so not following the primary"
            elif lag is None or lag > self.max_lag:
                behind = "an unknown time" if lag is None else f"{float(lag):.1f} s"
                state = f"lagging: {behind} behind, more than {self.max_lag:g} s"
            else:
                state = READY
        self._set(state)
        return state

    def mark_down(self, exc: BaseException) -> None:
        """A read failed on the replica: use the primary until the next check says otherwise."""
        self._set(f"down: a read failed ({type(exc).__name__})")

    def start_monitoring(self) -> None:
        """Check the replica every `check_interval` seconds, in a task of the running loop."""
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.get_running_loop().create_task(self._watch())

    async def stop_monitoring(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)

    async def dispose(self) -> None:
        """Stop checking, and dispose the engine if the replica made it; safe to call twice."""
        await self.stop_monitoring()
        if self.owns_engine:
            await self._engine.dispose()

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.check()
            except Exception:  # a fault in the check itself must not end the monitoring
                logger.exception("checking the read replica failed")
            await asyncio.sleep(max(0.0, self.check_interval - (time.monotonic() - started)))

    def _set(self, state: str) -> None:
        # Logged when the kind of state changes ("ok", "down", "lagging"), not whenever
        # the lag figure or the error's class does.
        changed = state.partition(":")[0] != self.state.partition(":")[0]
        self.state = state
        if not changed:
            return
        where = self._engine.url.render_as_string(hide_password=True)
        if state == READY:
            logger.info("read replica %s is in use", where)
        else:
            logger.warning("read replica %s is not used, reads go to the primary: %s", where, state)


def _routing_session_class(base: type[Session]) -> type[Session]:
    """`base` with the replica routing of this module; one class per base, made once."""
    routing = _routing_classes.get(base)
    if routing is None:
        routing = _routing_classes[base] = type(
            f"Replica{base.__name__}", (_ReplicaRouting, base), {}
        )
        event.listen(routing, "do_orm_execute", _route)
        event.listen(routing, "after_flush", _wrote)
        event.listen(routing, "after_transaction_end", _release)
    return routing


_routing_classes: dict[type[Session], type[Session]] = {}


class _ReplicaRouting(Session):
    def connection(self, *args: Any, **kwargs: Any) -> Any:
        # Whatever the caller does with the raw connection, it may write.
        self.info[_ON_PRIMARY] = True
        return super().connection(*args, **kwargs)


def use_primary(session: AsyncSession | Session) -> None:
    """Send every later statement of `session` to the primary, as if it had written.

    A route that must see the latest committed data calls `use_primary(db.session)`
    first; without a replica it changes nothing.
    """
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info[_ON_PRIMARY] = True


def _wrote(session: Session, flush_context: object) -> None:
    session.info[_ON_PRIMARY] = True


def _release(session: Session, transaction: SessionTransaction) -> None:
    # The session's transaction is over: so is its use of the replica connection.
    if transaction.parent is None:
        connection = session.info.pop(_CONNECTION, None)
        if connection is not None:
            connection.close()


def _replica_connection(session: Session, replica: Replica) -> Connection:
    """The session's connection to the replica, joined to its transaction but never committed.

    The session takes a connection that is already in a transaction as one it must not
    commit ("rollback_only"), so its commit never waits on, or fails on, the replica.
    `_release` returns it to the pool when the session's transaction ends.
    """
    connection: Connection | None = session.info.get(_CONNECTION)
    if connection is None:
        connection = replica.sync_engine.connect()
        connection.begin()  # in autocommit this sends nothing; it marks the connection as ours
        session.info[_CONNECTION] = connection
    return connection


def _route(state: ORMExecuteState) -> Any:
    session = state.session
    replica: Replica | None = session.info.get(_REPLICA)
    if replica is None or session.info.get(_ON_PRIMARY):
        return None
    if not state.is_select:
        session.info[_ON_PRIMARY] = True
        return None
    options = state.execution_options
    if (
        # Pending changes are flushed to the primary before this SELECT, which must see them.
        session.new
        or session.deleted
        or session.dirty
        or options.get(_PRIMARY_OPTION, False)
        # asyncpg opens a server-side cursor only inside a transaction, and replica
        # connections have none (autocommit).
        or options.get("stream_results", False)
        or options.get("yield_per")
        or "bind" in state.bind_arguments
        # A SAVEPOINT, or a session that joins connections through one, needs a transaction
        # on the replica, which its autocommit connections do not have.
        or session.in_nested_transaction()
        or session.join_transaction_mode not in ("conditional_savepoint", "rollback_only")
        or not replica.usable
    ):
        return None
    try:
        connection = _replica_connection(session, replica)
        return state.invoke_statement(bind_arguments={"bind": connection})
    except Exception as exc:
        if _sqlstate(exc) == _READ_ONLY:
            pass  # a locking read, which is a write's first step: the primary serves it
        elif _replica_fault(exc):
            replica.mark_down(exc)
        else:
            raise
    # Stay off the replica for the rest of the session: it locks rows, or its connection
    # there may be broken.
    session.info[_ON_PRIMARY] = True
    return state.invoke_statement()


def _sqlstate(exc: Exception) -> str | None:
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return None
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code if isinstance(code, str) else None


def _replica_fault(exc: Exception) -> bool:
    """Whether `exc` says the replica cannot serve the read, rather than that the read is bad."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        code = _sqlstate(exc)
        return (
            exc.connection_invalidated
            or isinstance(exc, _FAULT_CLASSES)
            or code in _REPLICA_FAULTS
            or (code is not None and code.startswith("08"))
        )
    if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
        # No free connection in the replica's pool, or a connection it dropped whose
        # transaction SQLAlchemy wants rolled back; any other is the statement's fault.
        return isinstance(exc, (sqlalchemy.exc.TimeoutError, sqlalchemy.exc.PendingRollbackError))
    # OSError and the driver's own errors come from connecting: refused, or a server
    # that is starting or shutting down.
    return True
