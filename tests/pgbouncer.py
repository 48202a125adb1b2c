"""Run PgBouncer from Debian's package in transaction mode, in front of a PostgreSQL server.

`running_pgbouncer(server_url)` starts one on a free loopback port, with its config,
auth file, log and pid file in a temporary directory, and stops it when the block
ends. PgBouncer refuses to run as root, so under root it drops to the `postgres`
system user that Debian's PostgreSQL package creates.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.conftest import RUNNING_IN_CI
from tests.servers import free_port

__all__ = ["PgBouncer", "pgbouncer_binary", "running_pgbouncer"]

# Where Debian's package puts it; PATH may not include /usr/sbin.
_LOCATIONS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
_STARTUP_DEADLINE = 30


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer: the URL to give clients instead of the server's, and its log."""

    url: str
    log: Path


def pgbouncer_binary() -> str:
    """The pgbouncer executable; skips on a laptop without it, fails under CI."""
    found = shutil.which("pgbouncer") or next(
        (path for path in _LOCATIONS if os.access(path, os.X_OK)), None
    )
    if found:
        return found
    reason = "needs PgBouncer: apt-get install pgbouncer (.ci/run does)"
    if RUNNING_IN_CI:
        pytest.fail(f"{reason}; CI is set, so this test may not be skipped", pytrace=False)
    pytest.skip(reason)


@contextmanager
def running_pgbouncer(server: str, *, pool_size: int) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode before `server`, `pool_size` connections per database."""
    binary = pgbouncer_binary()
    upstream = make_url(server)
    user = upstream.username or "postgres"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pgbouncer-") as directory:
        here = Path(directory)
        log = here / "pgbouncer.log"
        (here / "userlist.txt").write_text(f'"{user}" ""\n')
        (here / "pgbouncer.ini").write_text(
            config(
                upstream_host=upstream.host or "127.0.0.1",
                upstream_port=upstream.port or 5432,
                port=port,
                pool_size=pool_size,
                directory=here,
            )
        )
        command = [binary, str(here / "pgbouncer.ini")]
        if os.geteuid() == 0:
            _hand_over(here, "postgres")
            command[1:1] = ["-u", "postgres"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait_until_listening(port, process, log)
            yield PgBouncer(url=f"postgresql://{user}@127.0.0.1:{port}/postgres", log=log)
        finally:
            _stop(process)


def config(
    *, upstream_host: str, upstream_port: int, port: int, pool_size: int, directory: Path
) -> str:
    """pgbouncer.ini: any database name reaches the same-named one on the upstream server."""
    return f"""\
[databases]
* = host={upstream_host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "userlist.txt"}
logfile = {directory / "pgbouncer.log"}
pidfile = {directory / "pgbouncer.pid"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 1000
; SQLAlchemy's asyncpg docs: drop the statements a transaction prepared before the
; server connection goes to another client.
server_reset_query = DISCARD ALL
server_reset_query_always = 1
"""


def _hand_over(directory: Path, user: str) -> None:
    """Let `user` own the directory, so that PgBouncer can write its log and pid file there."""
    account = pwd.getpwnam(user)
    for path in (directory, *directory.iterdir()):
        os.chown(path, account.pw_uid, account.pw_gid)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    give_up = time.monotonic() + _STARTUP_DEADLINE
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > give_up:
            _stop(process)
            shown = log.read_text() if log.exists() else "(no log)"
            raise AssertionError(f"PgBouncer did not listen on {port}:\n{shown[-4000:]}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # an immediate shutdown: the clients are done
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
