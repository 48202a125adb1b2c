"""A streaming replica of the test PostgreSQL server, made for a test and removed after it.

`streaming_replica(primary)` copies the running server with `pg_basebackup -R` into a
temporary directory, starts that copy as a hot standby on a free loopback port, waits
until it streams from the primary, and stops and deletes it when the block ends. It
takes a few seconds and leaves nothing behind but the one `pg_hba.conf` line that lets
loopback clients replicate (`host replication all 127.0.0.1/32 trust`), which it adds
and reloads when the primary lacks it, like the server's other loopback trust rules.

PostgreSQL refuses to run as root, so as root the tools run as the `postgres` user.
Without the tools, or without the rights to add that line, `ReplicaUnavailable` says
what is missing; the tests skip with it on a laptop and fail under CI.
"""

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import URL, make_url

from tests.servers import free_port

__all__ = ["REPLICATION_RULE", "Replica", "ReplicaUnavailable", "streaming_replica"]

REPLICATION_RULE = "host replication all 127.0.0.1/32 trust"
# A hot standby refuses to start with less of these than its primary has.
_MATCH_PRIMARY = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
DEADLINE = 60.0


class ReplicaUnavailable(Exception):
    """This machine cannot run a replica; the message says what is missing."""


class Replica:
    """A running hot standby: its URL, and the switches the tests need."""

    def __init__(self, url: URL, data: Path, log: Path, pg_ctl: str, user: str | None) -> None:
        self.url = url
        self.port = url.port
        self._data = data
        self._log = log
        self._pg_ctl = pg_ctl
        self._user = user

    def stop(self) -> None:
        """Stop the server the way an operator would (fast: its sessions are ended)."""
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        self._ctl("start", "-l", str(self._log))
        asyncio.run(_wait_streaming(self.url))

    def running(self) -> bool:
        status = _run(self._user, self._pg_ctl, "-D", str(self._data), "status", check=False)
        return status.returncode == 0

    def log(self) -> str:
        return self._log.read_text() if self._log.exists() else ""

    def _ctl(self, action: str, *options: str) -> None:
        _run(self._user, self._pg_ctl, "-D", str(self._data), "-w", "-t", "60", action, *options)


@contextmanager
def streaming_replica(primary: str) -> Iterator[Replica]:
    """A hot standby of the PostgreSQL server `primary` names, removed when the block ends."""
    url = make_url(primary).set(drivername="postgresql")
    if url.host not in ("127.0.0.1", "localhost"):
        raise ReplicaUnavailable(f"the primary must be on loopback, not {url.host}")
    settings = asyncio.run(_prepare_primary(url))
    user = _server_user()
    pg_ctl = _tool("pg_ctl", settings["server_version_num"])
    basebackup = _tool("pg_basebackup", settings["server_version_num"])
    root = Path(tempfile.mkdtemp(prefix="replica-"))
    data, log = root / "data", root / "server.log"
    if user is not None:
        shutil.chown(root, user=user)
    os.chmod(root, 0o700)
    port = free_port()
    replica = Replica(url.set(port=port, database="postgres"), data, log, pg_ctl, user)
    try:
        _run(
            user,
            *(basebackup, "-h", str(url.host), "-p", str(url.port or 5432)),
            *(
                "-U",
                url.username or "postgres",
                "-D",
                str(data),
                "-R",
                "-c",
                "fast",
                "-X",
                "stream",
            ),
        )
        config = {
            "port": str(port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{root}'",
            "hot_standby": "on",
            **{name: settings[name] for name in _MATCH_PRIMARY},
        }
        # The primary's configuration may live outside its data directory (Debian keeps
        # it in /etc/postgresql), so the copy gets files of its own.
        _write(data / "postgresql.conf", "".join(f"{k} = {v}\n" for k, v in config.items()), user)
        _write(data / "pg_hba.conf", "host all all 127.0.0.1/32 trust\n", user)
        _write(data / "pg_ident.conf", "", user)
        replica.start()
        yield replica
    except subprocess.CalledProcessError as exc:
        raise AssertionError(
            f"{exc.cmd[0]} failed: {exc.stderr}\n{replica.log()[-4000:]}"
        ) from None
    finally:
        if replica.running():
            _run(user, pg_ctl, "-D", str(data), "-w", "-t", "60", "stop", "-m", "immediate")
        shutil.rmtree(root, ignore_errors=True)


async def pause_replay(replica: URL) -> None:
    await _execute(replica, "SELECT pg_wal_replay_pause()")


async def resume_replay(replica: URL) -> None:
    await _execute(replica, "SELECT pg_wal_replay_resume()")


async def _execute(url: URL, statement: str) -> None:
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _prepare_primary(url: URL) -> dict[str, str]:
    """The primary's settings a replica must match, after making sure it lets us replicate."""
    try:
        connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    except (OSError, asyncpg.PostgresError) as exc:
        raise ReplicaUnavailable(f"the primary does not answer: {exc}") from None
    try:
        names = ("server_version_num", "wal_level", *_MATCH_PRIMARY)
        settings = {name: await connection.fetchval(f"SHOW {name}") for name in names}
        if settings["wal_level"] == "minimal" or settings["max_wal_senders"] == "0":
            raise ReplicaUnavailable("the primary has wal_level=minimal or max_wal_senders=0")
        allowed = await connection.fetchval(
            "SELECT count(*) FROM pg_hba_file_rules WHERE type = 'host'"
            " AND 'replication' = ANY(database) AND address = '127.0.0.1'"
            " AND auth_method = 'trust'"
        )
        if not allowed:
            hba = Path(await connection.fetchval("SHOW hba_file"))
            try:
                with hba.open("a") as rules:
                    rules.write(f"{REPLICATION_RULE}\n")
            except OSError as exc:
                raise ReplicaUnavailable(
                    f"{hba} lacks '{REPLICATION_RULE}' and cannot be changed here ({exc})"
                ) from None
            await connection.execute("SELECT pg_reload_conf()")
        return settings
    finally:
        await connection.close()


async def _wait_streaming(url: URL) -> None:
    """Wait until the replica accepts connections, is in recovery and streams from the primary."""
    give_up = time.monotonic() + DEADLINE
    while True:
        try:
            connection = await asyncpg.connect(url.render_as_string(hide_password=False))
            try:
                streaming = await connection.fetchval(
                    "SELECT pg_is_in_recovery() AND EXISTS"
                    " (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')"
                )
            finally:
                await connection.close()
            if streaming:
                return
        except (OSError, asyncpg.PostgresError):
            pass
        if time.monotonic() > give_up:
            raise AssertionError(f"the replica on port {url.port} did not start streaming")
        await asyncio.sleep(0.2)


def _server_user() -> str | None:
    """The user to run the server tools as: `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ReplicaUnavailable("running as root, and there is no postgres user") from None
    if shutil.which("runuser") is None:
        raise ReplicaUnavailable("running as root, and runuser is missing")
    return "postgres"


def _tool(name: str, version_num: str) -> str:
    # Debian keeps the server tools of each major version out of PATH.
    major = int(version_num) // 10000
    found = shutil.which(name) or shutil.which(name, path=f"/usr/lib/postgresql/{major}/bin")
    if found is None:
        raise ReplicaUnavailable(f"{name} is not installed (PostgreSQL {major}'s server tools)")
    return found


def _write(path: Path, text: str, user: str | None) -> None:
    path.write_text(text)
    if user is not None:
        shutil.chown(path, user=user)


def _run(user: str | None, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", user, "--"] if user is not None else []
    return subprocess.run(
        [*prefix, *command], capture_output=True, text=True, timeout=120, check=check
    )
