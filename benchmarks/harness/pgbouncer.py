"""PgBouncer from Debian's package, in transaction mode, for the service-pgbouncer contestant.

Standard library only. `running_pgbouncer` starts one on a given loopback port in front
of the benchmark's PostgreSQL server, with its config, log and pid file in a temporary
directory, and stops it when the block ends. PgBouncer refuses to run as root, so under
root it drops to the `postgres` system user that Debian's PostgreSQL package creates.
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
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["PgBouncerError", "free_port", "running_pgbouncer"]

# Where Debian's package puts it; PATH may not include /usr/sbin.
_LOCATIONS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
_STARTUP_DEADLINE = 30


class PgBouncerError(Exception):
    """PgBouncer is missing or did not start; the message says which and what to do."""


@contextmanager
def running_pgbouncer(server_dsn: str, *, port: int, pool_size: int) -> Iterator[Path]:
    """PgBouncer on `port` before the server of `server_dsn`; yields the path of its log."""
    binary = shutil.which("pgbouncer") or next(
        (path for path in _LOCATIONS if os.access(path, os.X_OK)), None
    )
    if binary is None:
        raise PgBouncerError("needs PgBouncer: apt-get install pgbouncer")
    server = urlsplit(server_dsn)
    with tempfile.TemporaryDirectory(prefix="bench-pgbouncer-") as directory:
        here = Path(directory)
        log = here / "pgbouncer.log"
        (here / "userlist.txt").write_text(f'"{server.username or "postgres"}" ""\n')
        (here / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={server.hostname or "127.0.0.1"} port={server.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {here / "userlist.txt"}
logfile = {log}
pidfile = {here / "pgbouncer.pid"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 1000
server_reset_query = DISCARD ALL
server_reset_query_always = 1
""")
        command = [binary, str(here / "pgbouncer.ini")]
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (here, *here.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
            command[1:1] = ["-u", "postgres"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait_until_listening(port, process, log)
            yield log
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    give_up = time.monotonic() + _STARTUP_DEADLINE
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > give_up:
            shown = log.read_text()[-2000:] if log.exists() else "(no log)"
            raise PgBouncerError(f"PgBouncer did not listen on {port}: {shown}")
        time.sleep(0.1)
